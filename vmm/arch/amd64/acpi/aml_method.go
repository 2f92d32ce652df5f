package acpi

// Control methods for the AML encoder (ACPI spec 20.2.5): Method, If,
// LEqual, Notify and the method arguments, the least a Generic Event
// Device's _EVT needs.

const (
	opMethod = 0x14
	opArg0   = 0x68 // Arg0..Arg6 are 0x68..0x6E
	opNotify = 0x86
	opLEqual = 0x93
	opIf     = 0xA0

	maxMethodArgs = 7
)

// amlMethod encodes Method(name, args, NotSerialized or Serialized) {
// terms } with sync level 0.
func amlMethod(name string, args int, serialized bool, terms ...[]byte) []byte {
	if args < 0 || args > maxMethodArgs {
		panic("acpi: aml method takes 0-7 arguments")
	}
	flags := byte(args)
	if serialized {
		flags |= 1 << 3
	}
	body := concat(nameString(name), []byte{flags}, concat(terms...))
	return concat([]byte{opMethod}, pkgLength(len(body)), body)
}

// amlIf encodes If(predicate) { terms }.
func amlIf(predicate []byte, terms ...[]byte) []byte {
	body := concat(predicate, concat(terms...))
	return concat([]byte{opIf}, pkgLength(len(body)), body)
}

// amlLEqual encodes LEqual(a, b).
func amlLEqual(a, b []byte) []byte { return concat([]byte{opLEqual}, a, b) }

// amlArg encodes ArgN (0-6).
func amlArg(n int) []byte {
	if n < 0 || n >= maxMethodArgs {
		panic("acpi: aml has Arg0..Arg6")
	}
	return []byte{opArg0 + byte(n)}
}

// amlNotify encodes Notify(path, value).
func amlNotify(path string, value []byte) []byte {
	return concat([]byte{opNotify}, nameString(path), value)
}
