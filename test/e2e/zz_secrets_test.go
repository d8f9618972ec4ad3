package e2e

import (
	"strings"
	"testing"
)

// TestNoSecretsInLogs runs last (file order): after every other test has pushed traffic —
// good keys, bad keys, errors, streams, translations — through a gateway logging at debug
// level, no virtual-key secret, provider credential or pepper appears in its output or
// Envoy's.
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
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the %s appears in the gateway's output", name)
		}
	}
}
