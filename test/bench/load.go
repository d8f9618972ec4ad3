package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// target is one path under test: where to send the request and with which key.
type target struct {
	name   string // "direct", "envoy-only", "sluice", "sluice-guarded", with "-stream" for streamed requests
	base   string // what the stream rows are compared to ("direct" or "direct-stream")
	url    string // full URL of the chat completions endpoint
	auth   string // Authorization header value
	stream bool
	// admin, for sluice rows, is its Envoy's admin address: the row reports ext_proc
	// messages per request from Envoy's own counters.
	admin string
}

// Request bodies: small, fixed, OpenAI chat completions.
var (
	bodyPlain  = []byte(`{"model":"` + benchModel + `","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}`)
	bodyStream = []byte(`{"model":"` + benchModel + `","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true}`)

	// A complete answer: the non-streamed object, or the stream's terminator.
	okPlain  = []byte(`"chat.completion"`)
	okStream = []byte("data: [DONE]")
)

// run is the outcome of one measured batch.
type run struct {
	lat      []time.Duration // one per request, in completion-slot order
	errors   int64
	firstErr string
	elapsed  time.Duration // wall time of the whole batch
}

// newClient returns a client whose keep-alive pool holds exactly conc connections to the
// target, so every measured request reuses a warm connection.
func newClient(conc int) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil, // loopback only; never a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conc,
		MaxIdleConnsPerHost:   conc,
		MaxConnsPerHost:       conc,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{Transport: tr}
}

// replayBody is a request body that can be rewound, so a worker reuses one *http.Request and
// one body for all its requests instead of allocating them per request. Every server on
// these paths reads the whole body before it answers, so by the time a response has been
// read to EOF the transport has finished with the body.
type replayBody struct{ r bytes.Reader }

func (b *replayBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *replayBody) Close() error               { return nil }

// load sends n requests to t with conc workers and records every latency: from just before
// client.Do to the last byte of the body (time to last byte, also for streams).
func load(ctx context.Context, client *http.Client, t target, n, conc int) (run, error) {
	body, ok := bodyPlain, okPlain
	if t.stream {
		body, ok = bodyStream, okStream
	}
	r := run{lat: make([]time.Duration, n)}
	var (
		next     atomic.Int64
		errs     atomic.Int64
		errOnce  sync.Once
		wg       sync.WaitGroup
		buildErr error
	)
	reqs := make([]*http.Request, conc)
	bodies := make([]*replayBody, conc)
	bufs := make([][]byte, conc)
	for w := range conc {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, nil)
		if err != nil {
			buildErr = err
			break
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", t.auth)
		req.ContentLength = int64(len(body))
		reqs[w], bodies[w], bufs[w] = req, &replayBody{}, make([]byte, 0, 8<<10)
	}
	if buildErr != nil {
		return r, buildErr
	}
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			req, rb, buf := reqs[w], bodies[w], bufs[w]
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				rb.r.Reset(body)
				req.Body = rb
				t0 := time.Now()
				var msg string
				resp, err := client.Do(req)
				if err == nil {
					buf, err = readAll(buf[:0], resp.Body)
					resp.Body.Close()
				}
				r.lat[i] = time.Since(t0)
				switch {
				case err != nil:
					msg = err.Error()
				case resp.StatusCode != http.StatusOK:
					msg = fmt.Sprintf("status %d: %.300s", resp.StatusCode, buf)
				case !bytes.Contains(buf, ok):
					msg = fmt.Sprintf("incomplete answer (no %s): %.300s", ok, buf)
				}
				if msg != "" {
					// After a failed exchange the transport may still hold the old body;
					// never rewind it under its feet.
					rb = &replayBody{}
					errs.Add(1)
					errOnce.Do(func() { r.firstErr = msg })
				}
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.errors = errs.Load()
	if done := next.Load(); done < int64(n) {
		r.lat = r.lat[:done]
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("stopped during %s c%d (deadline or signal): %w", t.name, conc, err)
	}
	return r, nil
}

// readAll reads r to EOF into buf, growing it only when an answer is larger than any before.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// stats is the pooled result of every batch of one (path, concurrency) cell.
type stats struct {
	path     string
	base     string
	conc     int
	lat      []time.Duration // sorted
	errors   int64
	firstErr string
	elapsed  time.Duration
	extProc  int64 // ext_proc messages Envoy sent during the measured requests; -1: not measured
}

// msgsPerRequest is the ext_proc messages per request, or "–" when not measured.
func (s *stats) msgsPerRequest() string {
	if s.extProc < 0 || len(s.lat) == 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(s.extProc)/float64(len(s.lat)), 'f', 2, 64)
}

func (s *stats) add(r run) {
	s.lat = append(s.lat, r.lat...)
	s.errors += r.errors
	if s.firstErr == "" {
		s.firstErr = r.firstErr
	}
	s.elapsed += r.elapsed
}

func (s *stats) finish() { slices.Sort(s.lat) }

func (s *stats) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(len(s.lat)) / s.elapsed.Seconds()
}

// pct is the nearest-rank percentile of sorted latencies.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func percentile(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return pct(s, p)
}
