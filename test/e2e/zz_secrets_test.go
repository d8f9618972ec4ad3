package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
)

// TestNoSecretsInLogs runs last (file order): after every other test has pushed traffic —
// good keys, bad keys, errors, streams, translations — through a gateway logging at debug
// level, no virtual-key secret, provider credential or pepper appears in its output or
// Envoy's, in any span any collector received, or in its metrics.
func TestNoSecretsInLogs(t *testing.T) {
	g := startGateway(t)
	secrets := map[string]string{
		"openai provider credential":    fakeOpenAIKey,
		"anthropic provider credential": fakeAnthropicKey,
		"pepper":                        g.pepper,
	}
	for name, s := range g.keys {
		secrets["virtual key "+name] = s
	}
	logs := g.logs.String()
	if len(logs) == 0 {
		t.Fatal("no gateway output captured: the check would prove nothing")
	}
	// Spans (every attribute, resource and header of every collector) and metrics too.
	var spans strings.Builder
	for _, r := range []*otlptest.Receiver{g.otlp, g.otlpA, g.otlpB} {
		for _, s := range r.Spans() {
			fmt.Fprintf(&spans, "%+v\n", s)
		}
	}
	if spans.Len() == 0 {
		t.Fatal("no spans collected: the check would prove nothing")
	}
	resp, err := http.Get(g.metrics)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for where, text := range map[string]string{"output": logs, "spans": spans.String(), "metrics": string(metrics)} {
		for name, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("the %s appears in the gateway's %s", name, where)
			}
		}
	}
}
