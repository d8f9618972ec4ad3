package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// PassthroughConfig sets the passthrough lane's transport limits. Zero values take the
// documented defaults; a provider's own timeouts override the attempt timeouts.
type PassthroughConfig struct {
	DialTimeout         time.Duration // default 5 s
	MaxIdleConnsPerHost int           // default 256: keep-alive pool per provider
	IdleConnTimeout     time.Duration // default 90 s
	// StreamIdleTimeout bounds the silence between two reads of an answer once its headers
	// arrived (an SSE stream's chunks, a JSON or error body's pieces): default 5 min. The
	// first-byte timeout is the dispatcher's, for every lane.
	StreamIdleTimeout time.Duration
	// Transport replaces the built transport (tests).
	Transport http.RoundTripper
}

// errIdleTimeout cancels an attempt whose answer fell silent.
var errIdleTimeout = errors.New("provider answer idle past the idle timeout")

// Passthrough forwards same-format traffic: the body as received (only the model name is
// rewritten, and only when the chain names another), the client's headers minus its
// credential, and the response bytes as they arrive.
type Passthrough struct {
	client *http.Client
	cfg    PassthroughConfig
}

var _ Lane = (*Passthrough)(nil)

// NewPassthrough returns the lane with a pooled keep-alive transport.
func NewPassthrough(c PassthroughConfig) *Passthrough {
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = 256
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 90 * time.Second
	}
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = 5 * time.Minute
	}
	rt := c.Transport
	if rt == nil {
		dialer := &net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}
		rt = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// A provider's own connect timeout travels in the attempt's context.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, d)
					defer cancel()
				}
				return dialer.DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          4 * c.MaxIdleConnsPerHost,
			MaxIdleConnsPerHost:   c.MaxIdleConnsPerHost,
			IdleConnTimeout:       c.IdleConnTimeout,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Identity bodies: an SSE stream must not wait in a decompressor, and bytes reach
			// the client exactly as the provider sent them.
			DisableCompression: true,
		}
	}
	// No client-level timeout: it would cut long, healthy streams.
	return &Passthrough{cfg: c, client: &http.Client{Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type connectTimeoutKey struct{}

// idleTimeout is one attempt's: the provider's own, else the lane's default.
func (p *Passthrough) idleTimeout(req *attempt.Request) time.Duration {
	if ms := req.Provider.Timeouts.StreamIdleMS; ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return p.cfg.StreamIdleTimeout
}

// dropResponseHeaders are provider response headers never relayed to the client.
var dropResponseHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	// They name the gateway's own provider account, or set its cookies: not the client's.
	"Openai-Organization": true, "Openai-Project": true, "Anthropic-Organization-Id": true, "Set-Cookie": true,
}

// maxErrorBody bounds how much of a provider's error response is kept for relaying.
const maxErrorBody = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Do implements [Lane.Do]. The Result carries what the provider said about the attempt
// (usage, model, finish reasons), read from the relayed bytes by a [usageMeter].
func (p *Passthrough) Do(ctx context.Context, req *attempt.Request, w http.ResponseWriter) (res attempt.Result) {
	defer func() { res.Done = time.Now() }()
	body := req.Body
	url, model := destination(req)
	if gjson.GetBytes(body, "model").Str != model {
		// sjson returns a new slice; req.Body stays intact for the next attempt.
		var err error
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return attempt.Result{Err: err}
		}
	}
	body, hideUsage := askStreamUsage(req, body)
	// The attempt has its own context, which its idle timer cancels with a cause; the
	// dispatcher's (first-byte timeout, the client) still cancels it too.
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if ms := req.Provider.Timeouts.ConnectMS; ms > 0 {
		ctx = context.WithValue(ctx, connectTimeoutKey{}, time.Duration(ms)*time.Millisecond)
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return attempt.Result{Err: err}
	}
	up.Header = make(http.Header, len(req.Header)+3)
	for k, v := range req.Header {
		up.Header[k] = v
	}
	up.ContentLength = int64(len(body))
	if up.Header.Get("Content-Type") == "" {
		up.Header.Set("Content-Type", "application/json")
	}
	switch {
	case req.Provider.Type == config.ProviderAnthropic:
		if req.Provider.APIKey != "" {
			up.Header.Set("X-Api-Key", req.Provider.APIKey)
		}
		if up.Header.Get("Anthropic-Version") == "" {
			up.Header.Set("Anthropic-Version", "2023-06-01")
		}
	case req.Provider.APIKey == "":
	case req.Provider.Type == config.ProviderAzure:
		up.Header.Set("Api-Key", req.Provider.APIKey)
	default:
		up.Header.Set("Authorization", "Bearer "+req.Provider.APIKey)
	}

	resp, err := p.client.Do(up)
	if err != nil {
		// Nothing arrived: a network error or timeout is always worth the next provider,
		// unless the attempt was cancelled (the dispatcher's timeout says so itself).
		return attempt.Result{Retryable: parent.Err() == nil, Timeout: isTimeout(err), Err: err}
	}
	headersAt := time.Now()
	defer resp.Body.Close()
	// From the headers on, every read of the body re-arms the idle timer: silence past it
	// cancels the attempt, whether the body is a stream, an answer or an error.
	idle := p.idleTimeout(req)
	idleTimer := time.AfterFunc(idle, func() { cancel(errIdleTimeout) })
	defer idleTimer.Stop()
	src := &idleReader{r: resp.Body, t: idleTimer, d: idle}
	if resp.StatusCode >= 400 {
		b, err := io.ReadAll(io.LimitReader(src, maxErrorBody))
		stalled := errors.Is(context.Cause(ctx), errIdleTimeout)
		return attempt.Result{
			Status:    resp.StatusCode,
			Retryable: resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || stalled,
			Timeout:   stalled,
			Header:    resp.Header, Body: b, Err: err,
			FirstByte: headersAt, // the body is read at once: its first byte is not timed apart
		}
	}

	h := w.Header()
	for k, v := range resp.Header {
		if !dropResponseHeaders[k] && !strings.HasPrefix(k, "X-Sluice-") {
			h[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	res = attempt.Result{Status: resp.StatusCode, Committed: true}
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var meter *usageMeter
	if resp.StatusCode/100 == 2 {
		meter = newUsageMeter(req.Endpoint, sse, resp.Header.Get("Content-Encoding"), resp.ContentLength)
	}
	out := w
	var framer *sseFramer
	if sse {
		// Whole events only: a stream cut mid-event must not leave half an event in front
		// of the error event that ends it.
		framer = &sseFramer{ResponseWriter: w, dropUsage: hideUsage}
		out = framer
	}
	first, err := copyBody(out, src, sse, meter)
	if framer != nil && err == nil {
		framer.flushRest()
	}
	if first.IsZero() {
		first = headersAt // an empty body: the headers were all the provider sent
	}
	res.FirstByte = first
	if meter != nil {
		// A stream reports what arrived before a cut; a cut JSON body is unreadable anyway.
		if err == nil || sse {
			meter.finish(&res)
		} else {
			meter.release()
		}
	}
	if err != nil {
		res.Err = err
		res.Timeout = errors.Is(context.Cause(ctx), errIdleTimeout)
		var ue upstreamError
		if !errors.As(err, &ue) {
			return res // the client left; nothing more to tell it
		}
		if !sse {
			// A truncated JSON body must not look complete: the dispatcher aborts the
			// connection once it has recorded the attempt.
			res.Abort = true
			return res
		}
		e := apierror.New(http.StatusBadGateway, "upstream_stream_error", "The provider's stream ended unexpectedly.")
		_, _ = w.Write(e.StreamEvent(req.ClientFormat, req.Endpoint, req.RequestID))
		_ = http.NewResponseController(w).Flush()
	}
	return res
}

// upstreamError marks a read failure on the provider side, as opposed to a write failure
// towards the client.
type upstreamError struct{ error }

func (e upstreamError) Unwrap() error { return e.error }

// copyBody copies src to w; with flush, every read is flushed at once so SSE events reach the
// client as the provider sends them. A non-nil meter is fed every piece read, after the
// client got it. first is when the first byte was read (zero for an empty body).
func copyBody(w http.ResponseWriter, src io.Reader, flush bool, meter *usageMeter) (first time.Time, err error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			_, werr := w.Write(buf[:n])
			// A writer that cannot flush (a wrapper without Unwrap) still gets every byte, only
			// later; it is not a client that left.
			if werr == nil && flush {
				if err := rc.Flush(); !errors.Is(err, http.ErrNotSupported) {
					werr = err
				}
			}
			// After the client has the piece (or is gone: the provider sent it all the same).
			if meter != nil {
				meter.write(buf[:n])
			}
			if werr != nil {
				return first, werr
			}
		}
		if rerr == io.EOF {
			return first, nil
		}
		if rerr != nil {
			return first, upstreamError{rerr}
		}
	}
}

// isTimeout reports whether err is a network timeout (a dial that did not complete).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// idleReader re-arms an idle timer on every read that returns data.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}

// destination is where an attempt goes and the model name its body carries: the provider's
// base URL and the endpoint's path, with the client's query string. Azure OpenAI serves
// chat completions and embeddings of a model its deployment map lists at the deployment
// (/openai/deployments/{name}/…?api-version=…, the configured version replacing any the
// client sent); everything else at the resource's v1 API (/openai/v1/…), where a mapped
// model is named by its deployment.
func destination(req *attempt.Request) (string, string) {
	p := req.Provider
	path, query, model := req.Endpoint.Path(), req.RawQuery, req.Model
	if p.Type == config.ProviderAzure {
		dep, mapped := p.Azure.Deployments[req.Model]
		switch {
		case mapped && (req.Endpoint == wire.ChatCompletions || req.Endpoint == wire.Embeddings):
			path = "/openai/deployments/" + url.PathEscape(dep) + strings.TrimPrefix(path, "/v1")
			v, _ := url.ParseQuery(query)
			if v == nil {
				v = url.Values{}
			}
			v.Set("api-version", p.Azure.APIVersion)
			query = v.Encode()
		default:
			path = "/openai" + path
			if mapped {
				model = dep
			}
		}
	}
	if query != "" {
		return p.BaseURL + path + "?" + query, model
	}
	return p.BaseURL + path, model
}
