package config

import (
	"strings"
	"testing"
)

func TestGuardrailValidate(t *testing.T) {
	pii := func(mod func(g *Guardrail)) *Guardrail {
		g := &Guardrail{ID: "pii-redact", Name: "PII", Kind: GuardrailPII, Action: ActionRedact,
			Directions: []GuardrailDirection{DirectionRequest, DirectionStream}}
		if mod != nil {
			mod(g)
		}
		return g
	}
	cases := []struct {
		name string
		g    *Guardrail
		want string // substring of the error; "" means valid
	}{
		{"pii", pii(nil), ""},
		{"generated id", pii(func(g *Guardrail) { g.ID = NewID(KindGuardrail) }), ""},
		{"no directions", pii(func(g *Guardrail) { g.Directions = nil }), "directions is empty"},
		{"bad direction", pii(func(g *Guardrail) { g.Directions = []GuardrailDirection{"inbound"} }), `"inbound" is not request`},
		{"duplicate direction", pii(func(g *Guardrail) { g.Directions = []GuardrailDirection{DirectionRequest, DirectionRequest} }), "duplicate"},
		{"unknown entity", pii(func(g *Guardrail) { g.Entities = []string{"email", "shoe_size"} }), `"shoe_size" is not one of`},
		{"secret entity on pii", pii(func(g *Guardrail) { g.Entities = []string{"jwt"} }), `"jwt" is not one of`},
		{"bad action", pii(func(g *Guardrail) { g.Action = "shout" }), "action \"shout\""},
		{"bad failure mode", pii(func(g *Guardrail) { g.FailureMode = "maybe" }), "failure_mode"},
		{"timeout too long", pii(func(g *Guardrail) { g.TimeoutMS = 60_000 }), "timeout_ms"},
		{"patterns on pii", pii(func(g *Guardrail) { g.Patterns = []GuardrailPattern{{"X", "x"}} }), "regex kind only"},
		{"unknown kind", pii(func(g *Guardrail) { g.Kind = "vibes" }), `unknown kind "vibes"`},
		{"regex", &Guardrail{ID: "gr_x", Name: "x", Kind: GuardrailRegex, Directions: []GuardrailDirection{DirectionRequest},
			Patterns: []GuardrailPattern{{"PROJECT_X", `(?i)project\s+x`}}}, ""},
		{"regex without patterns", &Guardrail{ID: "gr_x", Name: "x", Kind: GuardrailRegex, Directions: []GuardrailDirection{DirectionRequest}}, "patterns is empty"},
		{"regex bad pattern", &Guardrail{ID: "gr_x", Name: "x", Kind: GuardrailRegex, Directions: []GuardrailDirection{DirectionRequest},
			Patterns: []GuardrailPattern{{"BAD", `(`}}}, "missing closing )"},
		{"regex bad name", &Guardrail{ID: "gr_x", Name: "x", Kind: GuardrailRegex, Directions: []GuardrailDirection{DirectionRequest},
			Patterns: []GuardrailPattern{{"has space", `x`}}}, "must be a letter"},
		{"webhook", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionRequest},
			Webhook: &Webhook{URL: "https://judge.internal/check", SigningSecretEnv: "JUDGE_SECRET"}, FailureMode: FailOpen}, ""},
		{"webhook missing", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionRequest}}, "webhook is required"},
		{"webhook url with credentials", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionRequest},
			Webhook: &Webhook{URL: "https://u:p@judge.internal/"}}, "without credentials"},
		{"webhook signed with a gateway secret", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionRequest},
			Webhook: &Webhook{URL: "https://judge.internal/", SigningSecretEnv: "sluice_pepper"}}, "may not name a SLUICE_ variable"},
		{"webhook with action", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionRequest},
			Webhook: &Webhook{URL: "https://judge.internal/"}, Action: ActionRedact}, "built-in detectors only"},
		{"webhook window", &Guardrail{ID: "judge", Name: "judge", Kind: GuardrailWebhook, Directions: []GuardrailDirection{DirectionStream},
			Webhook: &Webhook{URL: "https://judge.internal/", WindowChars: -1}}, "window_chars"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.g.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestStaticGuardrails(t *testing.T) {
	c := &Config{Version: Version,
		Providers:  []Provider{{ID: "p", Type: ProviderOpenAI}},
		Guardrails: []Guardrail{{ID: "pii", Name: "pii", Kind: GuardrailPII, Directions: []GuardrailDirection{DirectionRequest}}},
		Keys: []Key{{ID: "vk_1", Hash: strings.Repeat("ab", 32), Guardrails: []string{"pii"}},
			{ID: "vk_2", Hash: strings.Repeat("cd", 32), Guardrails: []string{"nope"}}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `unknown guardrail "nope"`) {
		t.Fatalf("Validate = %v, want the unknown guardrail named", err)
	}
	c.Keys = c.Keys[:1]
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := snap.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if r.Guardrails["pii"] == nil || len(r.Keys["vk_1"].Config.Guardrails) != 1 {
		t.Fatalf("guardrail or its attachment lost in the snapshot: %+v", r.Keys["vk_1"].Config)
	}
}
