package dispatcher

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// TestFallbackMetric: a fallback is counted when another provider follows, never for the
// chain's last failure; requests are counted with what the client got.
func TestFallbackMetric(t *testing.T) {
	lane := newLane(t, fail(503, true, `first`), fail(502, true, `second`))
	s := newServer(t, lane, lane, "")
	s.cfg.Metrics = metrics.New()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"client-model"}`,
		sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:a", "oa2:b")...))))
	if rec.Code != 502 {
		t.Fatalf("status %d", rec.Code)
	}
	srec := httptest.NewRecorder()
	s.cfg.Metrics.Handler().ServeHTTP(srec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(srec.Body)
	text := string(body)
	if !strings.Contains(text, `sluice_fallbacks_total{provider="oa",reason="5xx"} 1`) {
		t.Errorf("want one fallback from oa:\n%s", grep(text, "sluice_fallbacks_total"))
	}
	if strings.Contains(text, `sluice_fallbacks_total{provider="oa2"`) {
		t.Errorf("the chain's last failure was counted as a fallback:\n%s", grep(text, "sluice_fallbacks_total"))
	}
	if !strings.Contains(text, `status="502"`) {
		t.Errorf("the request is not counted with its 502:\n%s", grep(text, "sluice_requests_total"))
	}
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
