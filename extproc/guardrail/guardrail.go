// Package guardrail compiles guardrail documents ([config.Guardrail]) and evaluates text
// against them: built-in detectors (regex, pii, secrets) in-process, webhook evaluators
// over HTTP, and an incremental scanner for streamed text ([Stream]).
//
// It knows nothing of wire formats: callers hand it the plain text fields of a request or
// response and put the verdict back into their body.
package guardrail

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Options are shared by the guardrails compiled with them. The zero value is ready.
type Options struct {
	// Client calls webhooks; redirects are never followed, whatever its CheckRedirect.
	// nil: a private client (3 s dial, 5 s TLS handshake, 32 idle connections per host).
	Client *http.Client
	// Getenv looks up webhook signing secrets, once, in New. nil: os.Getenv.
	Getenv func(string) string
	// Now stamps signed webhook requests. nil: time.Now.
	Now func() time.Time
	// Logger, when set, gets a warning for each failed webhook call (the guardrail, the
	// request id and the cause, never the text). nil: failures are not logged.
	Logger *slog.Logger
}

// Guardrail is one compiled guardrail, safe for concurrent use.
type Guardrail struct {
	id       string
	dirs     uint8 // bit per direction, see dirBit
	timeout  time.Duration
	failOpen bool
	det      *detector // regex, pii, secrets
	hook     *webhook  // webhook
}

func dirBit(d config.GuardrailDirection) uint8 {
	switch d {
	case config.DirectionRequest:
		return 1
	case config.DirectionResponse:
		return 2
	case config.DirectionStream:
		return 4
	}
	return 0
}

// New compiles g. It fails when g does not validate or when its webhook's signing secret
// variable is empty.
func New(g *config.Guardrail, opts Options) (*Guardrail, error) {
	if g == nil {
		return nil, errors.New("guardrail: nil config")
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	c := &Guardrail{id: g.ID, timeout: g.Timeout(), failOpen: g.FailureMode == config.FailOpen}
	for _, d := range g.Directions {
		c.dirs |= dirBit(d)
	}
	var err error
	switch g.Kind {
	case config.GuardrailRegex:
		c.det, err = compileRegex(g)
	case config.GuardrailPII, config.GuardrailSecrets:
		c.det, err = compileEntities(g)
	case config.GuardrailWebhook:
		c.hook, err = newWebhook(g, opts)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ID returns the guardrail's id.
func (g *Guardrail) ID() string { return g.id }

// Has reports whether g inspects direction d.
func (g *Guardrail) Has(d config.GuardrailDirection) bool { return g.dirs&dirBit(d) != 0 }

// Meta names the request for webhooks. It never holds secrets.
type Meta struct {
	RequestID, KeyID, OrgID, TeamID, ProjectID, PrincipalID string
}

// Action is a verdict's kind.
type Action uint8

// Actions.
const (
	Allow  Action = iota // pass the texts as they are
	Block                // refuse; Verdict.Reason says why
	Modify               // pass Verdict.Texts instead
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Block:
		return "block"
	case Modify:
		return "modify"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Verdict is the result of [Check].
type Verdict struct {
	Action Action
	// Guardrail is the id of the guardrail that blocked (Block).
	Guardrail string
	// Reason says why (Block), and is safe to show the client: it names what was found,
	// never the matched text.
	Reason string
	// Texts (Modify) replace the input texts: same length and order.
	Texts []string
}

// Check evaluates texts (the text fields of one request or response, in order) against
// the guardrails of gs that inspect direction d.
//
// Built-in detectors run first, all in one scan of each original text (see [Stream]
// for why). If any of them blocks and finds something, Check blocks before any webhook
// is called, naming the first such guardrail in gs order and what it found first in the
// first text it found something in. Otherwise every match of a redacting detector is
// replaced by its placeholder; overlapping matches, of one detector or several, become
// one redaction, whose placeholder is that of the leftmost match (the longest of those
// starting there, then the first in gs order). Then every webhook runs in parallel on the
// redacted texts (so no webhook sees what a detector removed), each bounded by its
// guardrail's timeout and by ctx. Among webhooks, the first block in gs order wins; when
// two modify the same text, the first in gs order wins for that text. A webhook that
// fails (timeout, transport error, non-2xx, malformed answer) follows its failure mode:
// fail_open allows, fail_closed blocks with "guardrail <id> is unavailable".
//
// texts is not modified. When nothing matches and no webhook takes part, Check allocates
// nothing.
func Check(ctx context.Context, gs []*Guardrail, d config.GuardrailDirection, m Meta, texts []string) Verdict {
	out, changed := texts, false // out is copied on the first change
	dets, hooks := false, 0
	for _, g := range gs {
		switch {
		case !g.Has(d):
		case g.det != nil:
			dets = true
		default:
			hooks++
		}
	}
	if dets {
		ds := detectors{gs, d}
		blockG, blockSc := len(gs), -1 // the guardrail (index in gs) and scanner that block
		var ms []match
		for i, t := range texts {
			ms = ds.scan(t, ms)
			for _, m := range ms {
				if g, block := ds.blocks(m.sc); block && g < blockG {
					blockG, blockSc = g, m.sc
				}
			}
			if blockSc >= 0 {
				continue // only a guardrail earlier in gs can still change the verdict
			}
			if ms = ds.redactions(ms); len(ms) > 0 {
				if !changed {
					out, changed = slices.Clone(texts), true
				}
				out[i] = ds.redact(t, ms)
			}
		}
		if blockSc >= 0 {
			_, sc := ds.scanner(blockSc)
			return Verdict{Action: Block, Guardrail: gs[blockG].id, Reason: sc.reason}
		}
	}
	if hooks > 0 {
		v := checkHooks(ctx, gs, d, m, out, hooks)
		switch v.Action {
		case Block:
			return v
		case Modify:
			out, changed = v.Texts, true
		}
	}
	if !changed {
		return Verdict{Action: Allow}
	}
	return Verdict{Action: Modify, Texts: out}
}

// checkHooks runs the n webhooks of gs that inspect d over texts, in parallel.
func checkHooks(ctx context.Context, gs []*Guardrail, d config.GuardrailDirection, m Meta, texts []string, n int) Verdict {
	hooks := make([]*Guardrail, 0, n)
	for _, g := range gs {
		if g.hook != nil && g.Has(d) {
			hooks = append(hooks, g)
		}
	}
	res := make([]outcome, len(hooks))
	if len(hooks) == 1 {
		res[0] = hooks[0].evaluate(ctx, d, m, texts)
	} else {
		var wg sync.WaitGroup
		for i, g := range hooks {
			wg.Go(func() { res[i] = g.evaluate(ctx, d, m, texts) })
		}
		wg.Wait()
	}
	for i, o := range res {
		if o.action == Block {
			return Verdict{Action: Block, Guardrail: hooks[i].id, Reason: o.reason}
		}
	}
	var out []string
	var set []bool // texts already replaced by an earlier webhook
	for _, o := range res {
		if o.action != Modify {
			continue
		}
		for j, t := range o.texts {
			if t == texts[j] || set != nil && set[j] {
				continue
			}
			if out == nil {
				out, set = slices.Clone(texts), make([]bool, len(texts))
			}
			out[j], set[j] = t, true
		}
	}
	if out == nil {
		return Verdict{Action: Allow}
	}
	return Verdict{Action: Modify, Texts: out}
}
