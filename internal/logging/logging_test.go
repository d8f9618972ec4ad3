package logging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/vkey"
)

// creds has a String and exported fields: JSONHandler marshals the fields, TextHandler
// prints String().
type creds struct {
	User   string
	APIKey string `json:"api_key"`
}

func (c creds) String() string { return "creds{" + c.User + " " + c.APIKey + "}" }

// upstreamError is a struct error whose text carries a credential.
type upstreamError struct{ Header string }

func (e upstreamError) Error() string { return "upstream refused Authorization: " + e.Header }

// secretValuer resolves to a credential.
type secretValuer struct{}

func (secretValuer) LogValue() slog.Value { return slog.StringValue("resolved " + anthropic) }

// panicker panics when rendered.
type panicker struct{}

func (p *panicker) String() string { return p.Error() }
func (p *panicker) Error() string {
	if p == nil {
		panic("nil receiver")
	}
	panic("boom " + openAIProj)
}

type nilErr struct{}

func (*nilErr) Error() string { return "never called" }

// logEverything logs every canary in every position a value can take.
func logEverything(l *slog.Logger, fresh string) {
	l = l.With("with_key", sluiceKey, slog.Group("with_group", "auth", "Bearer "+bearerTok))
	l.Info("msg carries "+fresh+" and "+awsKeyID,
		"string", "x-api-key: "+openAIKey,
		"url", "https://generativelanguage.googleapis.com/v1/models?key="+googleKey+"&alt=sse",
		"err", fmt.Errorf("call provider: %w", errors.New("401 for "+anthropic)),
		"struct_err", upstreamError{Header: "Basic " + basicCred},
		"stringer", creds{User: "bob", APIKey: githubPAT},
		"stringer_ptr", &creds{User: "amy", APIKey: githubFine},
		"valuer", secretValuer{},
		"bytes", []byte("token="+slackTok),
		"raw", json.RawMessage(`{"password":"`+awsSTSKeyID+`"}`),
		"headers", http.Header{"Authorization": {"Bearer " + jwtTok}},
		"map", map[string]any{"nested": map[string]string{"pem": pemKey}},
		"panics", &panicker{},
		slog.Group("req", slog.String("dsn", "redis://:"+openAISvc+"@cache:6379"),
			slog.Group("inner", slog.Any("err", errors.New(jwtTok)))),
		"count", 3, "ok", true,
	)
	l.WithGroup("g").Error("in a group", "secret", "s3cr3t-value-123", "err", (*nilErr)(nil),
		"nil_panics", (*panicker)(nil), "password", creds{User: "x", APIKey: "plain-4567"}, "token", 42)
}

// TestEndToEnd logs a record full of canaries through NewHandler and checks that none
// survives, in JSON and in text, and that every JSON line still parses.
func TestEndToEnd(t *testing.T) {
	fresh, err := vkey.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, js := range []bool{true, false} {
		t.Run(fmt.Sprintf("json=%v", js), func(t *testing.T) {
			var buf bytes.Buffer
			logEverything(New(&buf, slog.LevelDebug, js), fresh)
			out := buf.String()
			for _, c := range append(canaries(), fresh, "s3cr3t-value-123", "plain-4567") {
				if strings.Contains(out, c) || strings.Contains(out, secretCore(c)) {
					t.Errorf("canary %.24s… survived", c)
				}
			}
			if !strings.Contains(out, Placeholder) || !strings.Contains(out, "PANIC") {
				t.Errorf("expected placeholders and the recovered panic in:\n%s", out)
			}
			if !js {
				t.Log(out)
				return
			}
			sc := bufio.NewScanner(&buf)
			lines := 0
			for sc.Scan() {
				lines++
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Errorf("line %d is not JSON: %v\n%s", lines, err, sc.Bytes())
				}
				if lines == 1 {
					// Structure survives: groups stay objects, raw JSON stays JSON.
					if _, ok := m["req"].(map[string]any)["inner"].(map[string]any); !ok {
						t.Errorf("group req.inner lost: %v", m["req"])
					}
					if _, ok := m["raw"].(map[string]any); !ok {
						t.Errorf("raw JSON lost its structure: %v", m["raw"])
					}
					if m["count"] != 3.0 || m["ok"] != true {
						t.Errorf("plain values changed: count=%v ok=%v", m["count"], m["ok"])
					}
				}
			}
			if lines != 2 {
				t.Errorf("%d lines, want 2:\n%s", lines, out)
			}
			t.Log(out)
		})
	}
}

// TestCleanRecordsUnchanged checks that a record with nothing to redact reaches the
// underlying handler as is: the same output as the plain handler, and in JSON (the
// production format) no extra allocation. Text renders error values itself (%+v).
func TestCleanRecordsUnchanged(t *testing.T) {
	logClean := func(l *slog.Logger) {
		l.Info("proxy attempt failed", "provider", "openai", "status", 502, "model", "gpt-4o",
			"key_id", "key_01", "err", errors.New("dial tcp 10.0.0.1:443: connection refused"))
	}
	for _, js := range []bool{true, false} {
		var buf bytes.Buffer
		opts := &slog.HandlerOptions{ReplaceAttr: dropTime}
		var plain slog.Handler = slog.NewTextHandler(&buf, opts)
		if js {
			plain = slog.NewJSONHandler(&buf, opts)
		}
		logClean(slog.New(plain))
		logClean(slog.New(RedactHandler(plain)))
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 || lines[0] != lines[1] {
			t.Errorf("json=%v: output differs:\n%s", js, buf.String())
		}
	}
	if raceEnabled {
		return
	}
	redL, plainL := New(io.Discard, slog.LevelInfo, true), slog.New(slog.NewJSONHandler(io.Discard, nil))
	red := testing.AllocsPerRun(100, func() { logClean(redL) })
	plain := testing.AllocsPerRun(100, func() { logClean(plainL) })
	if red > plain {
		t.Errorf("%v allocs per record through the redacting handler, %v without", red, plain)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestLevelAndGroups(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelWarn, true)
	l.Info("dropped", "token", "x")
	if buf.Len() != 0 {
		t.Fatalf("INFO logged at WARN: %s", buf.String())
	}
	l.WithGroup("req").With("api_key", "ak-1").Warn("kept", slog.Group("hdr", "authorization", "Token t-1"))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	req, _ := m["req"].(map[string]any)
	hdr, _ := req["hdr"].(map[string]any)
	// Values under a secret's name are replaced whole, whatever their shape.
	if req["api_key"] != Placeholder {
		t.Errorf("req.api_key = %v", req["api_key"])
	}
	if hdr["authorization"] != Placeholder {
		t.Errorf("hdr.authorization = %v", hdr["authorization"])
	}
}

// TestRedactHandlerIdempotent checks that wrapping twice does not redact twice.
func TestRedactHandlerIdempotent(t *testing.T) {
	h := NewHandler(io.Discard, slog.LevelInfo, true)
	if RedactHandler(h) != h {
		t.Error("RedactHandler wrapped a redacting handler again")
	}
	if err := h.Handle(context.Background(), slog.NewRecord(timeZero, slog.LevelInfo, "x", 0)); err != nil {
		t.Error(err)
	}
}

var timeZero = func() (t time.Time) { return }()
