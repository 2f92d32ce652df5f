package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// FetchOptions bound range requests.
type FetchOptions struct {
	// Attempts per request (default 4): network errors, 5xx and 429 are
	// retried with exponential back-off from Backoff (default 200 ms).
	Attempts int
	Backoff  time.Duration
	// RequestTimeout bounds one attempt, body included (default 30 s).
	RequestTimeout time.Duration
}

func (o FetchOptions) withDefaults() FetchOptions {
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	return o
}

// NetStats counts what went over the network for range requests.
type NetStats struct {
	Requests int64 `json:"requests"`
	Retries  int64 `json:"retries"`
	Bytes    int64 `json:"bytes"`
}

type netCounters struct{ requests, retries, bytes atomic.Int64 }

func (c *netCounters) snapshot() NetStats {
	return NetStats{Requests: c.requests.Load(), Retries: c.retries.Load(), Bytes: c.bytes.Load()}
}

// permanentError is a response retrying will not change (404, 416, 401...).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// fetchRange reads length bytes at off of blob d (a sha256 digest string)
// with an HTTP range request, retrying transient failures. lg says why (and
// which frames) for the request log; each attempt is logged.
func (p *repo) fetchRange(ctx context.Context, d string, off, length int64, o FetchOptions, ctr *netCounters, lg reqRecord) ([]byte, error) {
	o = o.withDefaults()
	var last error
	for attempt := 0; attempt < o.Attempts; attempt++ {
		if attempt > 0 {
			ctr.retries.Add(1)
			t := time.NewTimer(o.Backoff << (attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("registry: blob %s bytes %d+%d: %w (last error: %v)", d, off, length, ctx.Err(), last)
			case <-t.C:
			}
		}
		start := time.Now()
		b, err := p.fetchRangeOnce(ctx, d, off, length, o.RequestTimeout, ctr)
		lg.Time, lg.Blob, lg.Off, lg.Len, lg.Ms = start.UTC().Format(time.RFC3339Nano), d, off, length, since(start)
		if err != nil {
			lg.Err = err.Error()
		}
		logRequest(lg)
		if err == nil {
			return b, nil
		}
		last = err
		var pe *permanentError
		if errors.As(err, &pe) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("registry: %s: blob %s bytes %d+%d: %w", p.name(), d, off, length, last)
}

func (p *repo) fetchRangeOnce(ctx context.Context, d string, off, length int64, timeout time.Duration, ctr *netCounters) ([]byte, error) {
	ctx, cancel := context.WithTimeout(p.scoped(ctx), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.blobURL(d), nil)
	if err != nil {
		return nil, &permanentError{err}
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+length-1, 10))
	ctr.requests.Add(1)
	resp, err := p.ranges.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			want := "bytes " + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+length-1, 10) + "/"
			if len(cr) < len(want) || cr[:len(want)] != want {
				return nil, &permanentError{fmt.Errorf("%w: Content-Range %q for a request of bytes %d-%d", ErrCorrupt, cr, off, off+length-1)}
			}
		}
	case http.StatusOK:
		// No range support: skip to off (bounded by the timeout).
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			return nil, err
		}
	case http.StatusNotFound:
		return nil, &permanentError{fmt.Errorf("%w: HTTP 404", ErrNotFound)}
	case http.StatusTooManyRequests, http.StatusRequestTimeout:
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	default:
		err := fmt.Errorf("HTTP %s", resp.Status)
		if resp.StatusCode < 500 {
			return nil, &permanentError{err}
		}
		return nil, err
	}
	b := make([]byte, length)
	n, err := io.ReadFull(body, b)
	ctr.bytes.Add(int64(n))
	if err != nil {
		return nil, fmt.Errorf("reading %d of %d bytes: %w", n, length, err)
	}
	return b, nil
}
