package acpi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// A decoder for the AML subset the encoder produces, written from the spec
// independently of the encoder, so the tests can read the DSDT back.

// amlObject is a decoded named object's value: uint64, string, []byte
// (buffer) or []any (package).
type amlDecoder struct {
	b       []byte
	pos     int
	names   map[string]any // absolute path -> value
	devs    []string       // absolute paths of devices
	methods map[string]amlMethodDef
}

// amlMethodDef is a decoded Method: its argument count, serialize flag and
// its body (the term list, not decoded further).
type amlMethodDef struct {
	args       int
	serialized bool
	body       []byte
}

func decodeAML(b []byte) (*amlDecoder, error) {
	d := &amlDecoder{b: b, names: map[string]any{}, methods: map[string]amlMethodDef{}}
	if err := d.termList(len(b), `\`); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *amlDecoder) byte() (byte, error) {
	if d.pos >= len(d.b) {
		return 0, fmt.Errorf("aml: unexpected end at %#x", d.pos)
	}
	c := d.b[d.pos]
	d.pos++
	return c, nil
}

func (d *amlDecoder) pkgLength() (end int, err error) {
	start := d.pos
	c, err := d.byte()
	if err != nil {
		return 0, err
	}
	n := int(c >> 6)
	length := int(c & 0x3F)
	if n > 0 {
		length = int(c & 0xF)
		for i := range n {
			c, err := d.byte()
			if err != nil {
				return 0, err
			}
			length |= int(c) << (4 + 8*i)
		}
	}
	end = start + length
	if end > len(d.b) {
		return 0, fmt.Errorf("aml: package length %d at %#x runs past the end", length, start)
	}
	return end, nil
}

func (d *amlDecoder) nameString() (string, error) {
	var sb strings.Builder
	c, err := d.byte()
	if err != nil {
		return "", err
	}
	if c == '\\' {
		sb.WriteByte('\\')
		if c, err = d.byte(); err != nil {
			return "", err
		}
	}
	segs := 1
	switch c {
	case 0:
		return sb.String(), nil
	case 0x2E:
		segs = 2
	case 0x2F:
		n, err := d.byte()
		if err != nil {
			return "", err
		}
		segs = int(n)
	default:
		d.pos--
	}
	for i := range segs {
		if d.pos+4 > len(d.b) {
			return "", fmt.Errorf("aml: name segment at %#x truncated", d.pos)
		}
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.Write(d.b[d.pos : d.pos+4])
		d.pos += 4
	}
	return sb.String(), nil
}

func join(scope, name string) string {
	if strings.HasPrefix(name, `\`) {
		return name
	}
	if scope == `\` {
		return `\` + name
	}
	return scope + "." + name
}

func (d *amlDecoder) termList(end int, scope string) error {
	for d.pos < end {
		op, err := d.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x08: // Name
			name, err := d.nameString()
			if err != nil {
				return err
			}
			v, err := d.dataObject()
			if err != nil {
				return fmt.Errorf("aml: Name(%s): %w", name, err)
			}
			d.names[join(scope, name)] = v
		case 0x14: // Method
			pend, err := d.pkgLength()
			if err != nil {
				return err
			}
			name, err := d.nameString()
			if err != nil {
				return err
			}
			flags, err := d.byte()
			if err != nil {
				return err
			}
			if flags>>4 != 0 {
				return fmt.Errorf("aml: Method(%s) sync level %d, want 0", name, flags>>4)
			}
			d.methods[join(scope, name)] = amlMethodDef{args: int(flags & 7), serialized: flags&8 != 0, body: d.b[d.pos:pend]}
			d.pos = pend
		case 0x10: // Scope
			pend, err := d.pkgLength()
			if err != nil {
				return err
			}
			name, err := d.nameString()
			if err != nil {
				return err
			}
			if err := d.termList(pend, join(scope, name)); err != nil {
				return err
			}
		case 0x5B:
			ext, err := d.byte()
			if err != nil {
				return err
			}
			if ext != 0x82 {
				return fmt.Errorf("aml: unknown extended op %#x at %#x", ext, d.pos-1)
			}
			pend, err := d.pkgLength()
			if err != nil {
				return err
			}
			name, err := d.nameString()
			if err != nil {
				return err
			}
			path := join(scope, name)
			d.devs = append(d.devs, path)
			if err := d.termList(pend, path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("aml: unknown op %#x at %#x", op, d.pos-1)
		}
	}
	if d.pos != end {
		return fmt.Errorf("aml: term list ran to %#x, its package ends at %#x", d.pos, end)
	}
	return nil
}

func (d *amlDecoder) dataObject() (any, error) {
	op, err := d.byte()
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	need := func(n int) ([]byte, error) {
		if d.pos+n > len(d.b) {
			return nil, fmt.Errorf("aml: constant at %#x truncated", d.pos)
		}
		b := d.b[d.pos : d.pos+n]
		d.pos += n
		return b, nil
	}
	switch op {
	case 0x00:
		return uint64(0), nil
	case 0x01:
		return uint64(1), nil
	case 0xFF:
		return ^uint64(0), nil
	case 0x0A:
		b, err := need(1)
		if err != nil {
			return nil, err
		}
		return uint64(b[0]), nil
	case 0x0B:
		b, err := need(2)
		if err != nil {
			return nil, err
		}
		return uint64(le.Uint16(b)), nil
	case 0x0C:
		b, err := need(4)
		if err != nil {
			return nil, err
		}
		return uint64(le.Uint32(b)), nil
	case 0x0E:
		b, err := need(8)
		if err != nil {
			return nil, err
		}
		return le.Uint64(b), nil
	case 0x0D:
		i := d.pos
		for i < len(d.b) && d.b[i] != 0 {
			i++
		}
		if i == len(d.b) {
			return nil, fmt.Errorf("aml: unterminated string at %#x", d.pos)
		}
		s := string(d.b[d.pos:i])
		d.pos = i + 1
		return s, nil
	case 0x11: // Buffer
		end, err := d.pkgLength()
		if err != nil {
			return nil, err
		}
		sz, err := d.dataObject()
		if err != nil {
			return nil, err
		}
		n, ok := sz.(uint64)
		if !ok || int(n) != end-d.pos {
			return nil, fmt.Errorf("aml: buffer size %v, %d bytes follow", sz, end-d.pos)
		}
		b := d.b[d.pos:end]
		d.pos = end
		return b, nil
	case 0x12: // Package
		end, err := d.pkgLength()
		if err != nil {
			return nil, err
		}
		n, err := d.byte()
		if err != nil {
			return nil, err
		}
		var elems []any
		for d.pos < end {
			v, err := d.dataObject()
			if err != nil {
				return nil, err
			}
			elems = append(elems, v)
		}
		if d.pos != end || len(elems) != int(n) {
			return nil, fmt.Errorf("aml: package declares %d elements, has %d, ends at %#x of %#x", n, len(elems), d.pos, end)
		}
		return elems, nil
	}
	return nil, fmt.Errorf("aml: unknown data object op %#x at %#x", op, d.pos-1)
}
