package guardrail

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Headers of a signed webhook request. The signature is [Sign] over the timestamp and
// the body; evaluators check it with [Verify] and should refuse stale timestamps.
const (
	HeaderTimestamp = "X-Sluice-Timestamp"
	HeaderSignature = "X-Sluice-Signature"
)

const (
	maxResponseBytes = 1 << 20 // a larger webhook answer is a failure
	maxReasonRunes   = 200     // of a webhook's block reason shown to clients
)

// Sign returns the X-Sluice-Signature value for body sent at unix time ts:
// "v1=" + lowercase hex HMAC-SHA256(secret, ts + "." + body).
func Sign(secret []byte, ts int64, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// Verify reports whether header (an X-Sluice-Signature value; several comma-separated
// "v1=" entries are allowed, for secret rotation) signs body at ts with secret. The
// comparison takes constant time. Verify does not judge ts: callers compare it with
// their clock.
func Verify(secret []byte, header string, ts int64, body []byte) bool {
	want := mac(secret, ts, body)
	ok := false
	for part := range strings.SplitSeq(header, ",") {
		v, found := strings.CutPrefix(strings.TrimSpace(part), "v1=")
		if !found {
			continue
		}
		got, err := hex.DecodeString(v)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	return ok
}

func mac(secret []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	var b [24]byte
	m.Write(append(strconv.AppendInt(b[:0], ts, 10), '.'))
	m.Write(body)
	return m.Sum(nil)
}

// webhook is a compiled webhook evaluator.
type webhook struct {
	url    string
	secret []byte // nil: requests are not signed
	window int    // runes of streamed text per call
	client *http.Client
	now    func() time.Time
	log    *slog.Logger // nil: failures are not logged
}

func newWebhook(g *config.Guardrail, opts Options) (*webhook, error) {
	w := &webhook{url: g.Webhook.URL, window: g.Webhook.WindowChars, now: opts.Now, log: opts.Logger}
	if w.window <= 0 {
		w.window = config.DefaultWebhookWindow
	}
	if w.now == nil {
		w.now = time.Now
	}
	if name := g.Webhook.SigningSecretEnv; name != "" {
		getenv := opts.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		v := getenv(name)
		if v == "" {
			return nil, fmt.Errorf("guardrail %s: webhook.signing_secret_env %s is not set", g.ID, name)
		}
		w.secret = []byte(v)
	}
	if opts.Client == nil {
		w.client = defaultClient()
	} else {
		// A redirect would send the text, and the signature, somewhere the operator did not
		// name; the caller's client is copied so its other users keep their policy.
		c := *opts.Client
		c.CheckRedirect = noRedirect
		w.client = &c
	}
	return w, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// defaultClient is shared by every webhook compiled without Options.Client, so that a
// config reload, which compiles every guardrail anew, keeps the warm connections.
var defaultClient = sync.OnceValue(func() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  config.MaxGuardrailTimeout,
			MaxIdleConns:           256,
			MaxIdleConnsPerHost:    32,
			MaxConnsPerHost:        256,
			IdleConnTimeout:        2 * time.Minute,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: noRedirect,
	}
})

// hookRequest is the body of a webhook call.
type hookRequest struct {
	GuardrailID    string   `json:"guardrail_id"`
	Direction      string   `json:"direction"`
	RequestID      string   `json:"request_id,omitempty"`
	KeyID          string   `json:"key_id,omitempty"`
	OrganizationID string   `json:"organization_id,omitempty"`
	TeamID         string   `json:"team_id,omitempty"`
	ProjectID      string   `json:"project_id,omitempty"`
	PrincipalID    string   `json:"principal_id,omitempty"`
	Text           string   `json:"text"`
	Texts          []string `json:"texts"`
}

// hookResponse is a webhook's answer.
type hookResponse struct {
	Action string   `json:"action"`
	Reason string   `json:"reason"`
	Texts  []string `json:"texts"`
	Text   *string  `json:"text"`
}

// outcome is what one guardrail decided about a list of texts.
type outcome struct {
	action Action
	reason string   // Block: safe to show the client
	texts  []string // Modify: one per input text
}

// evaluate asks g's webhook about texts. A failure follows g's failure mode.
func (g *Guardrail) evaluate(ctx context.Context, d config.GuardrailDirection, m Meta, texts []string) outcome {
	o, err := g.hook.call(ctx, g, d, m, texts)
	if err == nil {
		return o
	}
	if w := g.hook; w.log != nil {
		// The URL may carry a token in its query: log the cause without it.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		w.log.LogAttrs(ctx, slog.LevelWarn, "guardrail webhook failed", slog.String("guardrail", g.id),
			slog.String("request_id", m.RequestID), slog.Bool("fail_open", g.failOpen), slog.String("error", err.Error()))
	}
	if g.failOpen {
		return outcome{action: Allow}
	}
	return outcome{action: Block, reason: "guardrail " + g.id + " is unavailable"}
}

func (w *webhook) call(ctx context.Context, g *Guardrail, d config.GuardrailDirection, m Meta, texts []string) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if texts == nil {
		texts = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(hookRequest{GuardrailID: g.id, Direction: string(d), RequestID: m.RequestID,
		KeyID: m.KeyID, OrganizationID: m.OrgID, TeamID: m.TeamID, ProjectID: m.ProjectID,
		PrincipalID: m.PrincipalID, Text: strings.Join(texts, "\n\n"), Texts: texts}); err != nil {
		return outcome{}, err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return outcome{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sluice-guardrail/1")
	if w.secret != nil {
		ts := w.now().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(w.secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return outcome{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // keep the connection
		return outcome{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return outcome{}, err
	}
	if len(data) > maxResponseBytes {
		return outcome{}, fmt.Errorf("answer is over %d bytes", maxResponseBytes)
	}
	var r hookResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return outcome{}, fmt.Errorf("answer: %w", err)
	}
	switch r.Action {
	case "allow":
		return outcome{action: Allow}, nil
	case "block":
		return outcome{action: Block, reason: webhookReason(g.id, r.Reason)}, nil
	case "modify":
		switch {
		case r.Texts != nil:
			if len(r.Texts) != len(texts) {
				return outcome{}, fmt.Errorf("modify returned %d texts for %d", len(r.Texts), len(texts))
			}
			return outcome{action: Modify, texts: r.Texts}, nil
		case r.Text != nil && len(texts) == 1:
			return outcome{action: Modify, texts: []string{*r.Text}}, nil
		}
		return outcome{}, errors.New("modify without texts of the right length")
	}
	return outcome{}, errors.New("unknown action") // not quoted: it could echo the text
}

// webhookReason is the client-facing reason for a webhook's block: "guardrail <id>:
// <reason>" without control or bidi characters, at most maxReasonRunes runes.
func webhookReason(id, reason string) string {
	if strings.TrimSpace(reason) == "" {
		reason = "blocked"
	}
	s := "guardrail " + id + ": " + reason
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
			continue
		}
		if n == maxReasonRunes {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
