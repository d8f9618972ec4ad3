package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// GuardrailKind names how a guardrail evaluates text.
type GuardrailKind string

// Guardrail kinds. The first three are built-in detectors evaluated in-process; a webhook
// asks an operator-run HTTP endpoint.
const (
	GuardrailRegex   GuardrailKind = "regex"
	GuardrailPII     GuardrailKind = "pii"
	GuardrailSecrets GuardrailKind = "secrets"
	GuardrailWebhook GuardrailKind = "webhook"
)

// GuardrailDirection names what a guardrail inspects.
type GuardrailDirection string

// Guardrail directions. Response covers non-streamed responses and Stream streamed ones:
// a guardrail that must see every answer lists both.
const (
	DirectionRequest  GuardrailDirection = "request"
	DirectionResponse GuardrailDirection = "response"
	DirectionStream   GuardrailDirection = "stream"
)

// GuardrailAction is what a built-in detector does with a match.
type GuardrailAction string

// Detector actions.
const (
	ActionBlock  GuardrailAction = "block"  // refuse with guardrail_blocked
	ActionRedact GuardrailAction = "redact" // replace the match with [REDACTED:TYPE]
)

// FailureMode says what happens when a guardrail cannot decide (a webhook that times out,
// errs or answers nonsense).
type FailureMode string

// Failure modes; "" means FailClosed.
const (
	FailClosed FailureMode = "fail_closed"
	FailOpen   FailureMode = "fail_open"
)

// PII and secret entities the built-in detectors know. A pii or secrets guardrail with no
// entities checks all of its kind's.
var (
	PIIEntities    = []string{"email", "phone", "credit_card", "iban", "us_ssn", "ip_address"}
	SecretEntities = []string{"openai_key", "anthropic_key", "aws_access_key", "github_token",
		"google_api_key", "slack_token", "private_key", "jwt", "sluice_key"}
)

// Guardrail limits.
const (
	DefaultGuardrailTimeout = time.Second
	// MaxGuardrailTimeout stays under Envoy's ext_proc message timeout, so a slow
	// evaluator meets its own failure mode rather than Envoy's.
	MaxGuardrailTimeout = 10 * time.Second
	// DefaultWebhookWindow is how much streamed text one webhook call sees.
	DefaultWebhookWindow = 512
	MaxWebhookWindow     = 64 << 10
)

// Guardrail inspects request, response or streamed text. Keys attach guardrails by id in
// their config, and organizations, teams and projects attach them for every key below.
type Guardrail struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Kind       GuardrailKind        `json:"kind"`
	Directions []GuardrailDirection `json:"directions"`
	// Action applies to built-in detectors; "" means block.
	Action GuardrailAction `json:"action,omitempty"`
	// Patterns are the regex kind's deny list.
	Patterns []GuardrailPattern `json:"patterns,omitempty"`
	// Entities narrow a pii or secrets guardrail; empty means all of its kind.
	Entities []string `json:"entities,omitempty"`
	// Webhook configures the webhook kind.
	Webhook     *Webhook    `json:"webhook,omitempty"`
	FailureMode FailureMode `json:"failure_mode,omitempty"`
	// TimeoutMS bounds one evaluation; 0 means DefaultGuardrailTimeout.
	TimeoutMS int       `json:"timeout_ms,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// GuardrailPattern is one named regular expression (RE2). A redaction reads
// [REDACTED:NAME], the name upper-cased.
type GuardrailPattern struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
}

// Webhook is an operator-run evaluator. Requests are signed with HMAC-SHA256 over the
// timestamp and body when SigningSecretEnv names a variable of extproc's environment.
type Webhook struct {
	URL              string `json:"url"`
	SigningSecretEnv string `json:"signing_secret_env,omitempty"`
	// WindowChars is how much streamed text one call sees; 0 means DefaultWebhookWindow.
	WindowChars int `json:"window_chars,omitempty"`
}

// ResourceKind implements [Resource].
func (*Guardrail) ResourceKind() Kind { return KindGuardrail }

// ResourceID implements [Resource].
func (g *Guardrail) ResourceID() string { return g.ID }

// Timeout returns the evaluation timeout.
func (g *Guardrail) Timeout() time.Duration {
	if g.TimeoutMS <= 0 {
		return DefaultGuardrailTimeout
	}
	return time.Duration(g.TimeoutMS) * time.Millisecond
}

// Has reports whether g inspects direction d.
func (g *Guardrail) Has(d GuardrailDirection) bool { return slices.Contains(g.Directions, d) }

var patternNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// Validate reports every problem with g, compiling its patterns.
func (g *Guardrail) Validate() error {
	errs := []error{ValidateID(KindGuardrail, g.ID), validateName("guardrail", g.Name, true)}
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("guardrail %s: "+format, append([]any{g.ID}, a...)...))
	}
	if len(g.Directions) == 0 {
		bad("directions is empty (want request, response and/or stream)")
	}
	for i, d := range g.Directions {
		switch d {
		case DirectionRequest, DirectionResponse, DirectionStream:
		default:
			bad("directions[%d]: %q is not request, response or stream", i, d)
		}
		if slices.Index(g.Directions, d) != i {
			bad("directions[%d]: duplicate %q", i, d)
		}
	}
	switch g.FailureMode {
	case "", FailClosed, FailOpen:
	default:
		bad("failure_mode %q is not fail_closed or fail_open", g.FailureMode)
	}
	if g.TimeoutMS < 0 || time.Duration(g.TimeoutMS)*time.Millisecond > MaxGuardrailTimeout {
		bad("timeout_ms %d is not in 0..%d", g.TimeoutMS, MaxGuardrailTimeout.Milliseconds())
	}
	detector := g.Kind != GuardrailWebhook
	switch g.Action {
	case "", ActionBlock, ActionRedact:
		if g.Action != "" && !detector {
			bad("action applies to built-in detectors only; a webhook answers for itself")
		}
	default:
		bad("action %q is not block or redact", g.Action)
	}
	if g.Kind != GuardrailRegex && len(g.Patterns) > 0 {
		bad("patterns apply to the regex kind only")
	}
	if g.Kind != GuardrailPII && g.Kind != GuardrailSecrets && len(g.Entities) > 0 {
		bad("entities apply to the pii and secrets kinds only")
	}
	if g.Kind != GuardrailWebhook && g.Webhook != nil {
		bad("webhook applies to the webhook kind only")
	}
	switch g.Kind {
	case GuardrailRegex:
		if len(g.Patterns) == 0 {
			bad("patterns is empty")
		}
		for i, p := range g.Patterns {
			if !patternNameRE.MatchString(p.Name) {
				bad("patterns[%d]: name %q must be a letter then up to 63 letters, digits or '_'", i, p.Name)
			}
			if p.Pattern == "" {
				bad("patterns[%d]: pattern is empty", i)
			} else if _, err := regexp.Compile(p.Pattern); err != nil {
				bad("patterns[%d]: %v", i, err)
			}
		}
	case GuardrailPII, GuardrailSecrets:
		known := PIIEntities
		if g.Kind == GuardrailSecrets {
			known = SecretEntities
		}
		for i, e := range g.Entities {
			if !slices.Contains(known, e) {
				bad("entities[%d]: %q is not one of %s", i, e, strings.Join(known, ", "))
			}
		}
	case GuardrailWebhook:
		errs = append(errs, g.validateWebhook())
	default:
		bad("unknown kind %q (want regex, pii, secrets or webhook)", g.Kind)
	}
	return errors.Join(errs...)
}

func (g *Guardrail) validateWebhook() error {
	w := g.Webhook
	if w == nil {
		return fmt.Errorf("guardrail %s: webhook is required for the webhook kind", g.ID)
	}
	var errs []error
	if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		errs = append(errs, fmt.Errorf("guardrail %s: webhook.url must be an http(s) URL without credentials", g.ID))
	}
	if w.SigningSecretEnv != "" && !envNameRE.MatchString(w.SigningSecretEnv) {
		errs = append(errs, fmt.Errorf("guardrail %s: webhook.signing_secret_env %q is not an environment variable name", g.ID, w.SigningSecretEnv))
	}
	// The gateway's own secrets live in SLUICE_* variables; signing with one would hand
	// whoever runs the webhook an HMAC oracle keyed by it.
	if strings.HasPrefix(strings.ToUpper(w.SigningSecretEnv), "SLUICE_") {
		errs = append(errs, fmt.Errorf("guardrail %s: webhook.signing_secret_env may not name a SLUICE_ variable", g.ID))
	}
	if w.WindowChars < 0 || w.WindowChars > MaxWebhookWindow {
		errs = append(errs, fmt.Errorf("guardrail %s: webhook.window_chars %d is not in 0..%d", g.ID, w.WindowChars, MaxWebhookWindow))
	}
	return errors.Join(errs...)
}
