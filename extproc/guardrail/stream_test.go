package guardrail

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice/internal/config"
)

// streamAll pushes chunks through a new Stream and flushes it. It returns every release
// (Flush's last) and whether the stream blocked.
func streamAll(t testing.TB, gs []*Guardrail, chunks ...string) ([]string, bool) {
	t.Helper()
	s := NewStream(context.Background(), gs, Meta{RequestID: "req"})
	var out []string
	for _, c := range chunks {
		r, blocked := s.Push(c)
		if blocked {
			if r != "" {
				t.Fatalf("blocked Push released %q", r)
			}
			return out, true
		}
		out = append(out, r)
	}
	r, blocked := s.Flush()
	if blocked {
		return out, true
	}
	return append(out, r), false
}

// checkAll is the non-streamed verdict on text: the redacted text, or blocked.
// blocker returns a regex guardrail that blocks on pattern.
func blocker(t testing.TB, pattern string) *Guardrail {
	return mustNew(t, "regex-block", config.GuardrailRegex, func(c *config.Guardrail) {
		c.Patterns = []config.GuardrailPattern{{Name: "DENIED", Pattern: pattern}}
	})
}

// ids names a list of guardrails in test failures.
func ids(gs []*Guardrail) string {
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString(g.ID())
	}
	return b.String()
}

func checkAll(gs []*Guardrail, text string) (string, bool) {
	v := Check(context.Background(), gs, config.DirectionStream, Meta{}, []string{text})
	switch v.Action {
	case Block:
		return "", true
	case Modify:
		return v.Texts[0], false
	}
	return text, false
}

func TestStreamEmailSplit(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailPII)}
	const email = "alice.smith@example.com"
	for _, text := range []string{
		email,
		"Contact " + email + " for details.",
		strings.Repeat("Some words come first. ", 6) + "Contact " + email + ", " + strings.Repeat("then more words. ", 6),
		strings.Repeat("x ", 40) + strings.Repeat("very.long.local.part.", 5) + email + " ok " + strings.Repeat("y ", 40),
	} {
		want, _ := checkAll(gs, text)
		if strings.Contains(want, "@") {
			t.Fatalf("Check left the email in %q", want)
		}
		for p := 1; p < len(text); p++ {
			rel, blocked := streamAll(t, gs, text[:p], text[p:])
			if got := strings.Join(rel, ""); blocked || got != want {
				t.Fatalf("split at %d:\n got %q (blocked %v)\nwant %q", p, got, blocked, want)
			}
			for _, r := range rel {
				// Nothing of the address but what Check also leaves.
				if strings.Contains(r, "@") || strings.Contains(r, "example") || strings.Contains(r, "alice") {
					t.Fatalf("split at %d released %q", p, r)
				}
			}
		}
	}
}

func TestStreamCardThreePushes(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailPII)}
	text := "Please charge card 4111 1111 1111 1111 for the order; thanks a lot for your help today."
	want := "Please charge card [REDACTED:CREDIT_CARD] for the order; thanks a lot for your help today."
	if got, _ := checkAll(gs, text); got != want {
		t.Fatalf("Check = %q", got)
	}
	for i := 1; i < len(text); i++ {
		for j := i + 1; j < len(text); j++ {
			rel, blocked := streamAll(t, gs, text[:i], text[i:j], text[j:])
			if got := strings.Join(rel, ""); blocked || got != want {
				t.Fatalf("splits %d, %d:\n got %q\nwant %q", i, j, got, want)
			}
		}
	}
}

// TestStreamLag: the detectors share one holdback, so however many there are, text with
// no match lags by no more than holdBytes and a word.
func TestStreamLag(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailPII), mustNew(t, "secrets-block", config.GuardrailSecrets, nil),
		mustNew(t, "words", config.GuardrailRegex, func(c *config.Guardrail) {
			c.Action = config.ActionRedact
			c.Patterns = []config.GuardrailPattern{{Name: "codename", Pattern: `Project (Bluebird|Nightjar)`}}
		})}
	for _, text := range []string{words(2 << 10), prose(2 << 10)} {
		if v := Check(context.Background(), gs, config.DirectionStream, Meta{}, []string{text}); v.Action != Allow {
			t.Fatalf("Check = %+v, want no match", v)
		}
		longest := 0 // the longest word the trailing-word rule may hold
		for w := range strings.FieldsFuncSeq(text, func(r rune) bool { return r >= utf8.RuneSelf || !is(byte(r), cHold) }) {
			longest = max(longest, len(w))
		}
		for _, size := range []int{1, 5, 8, 13, 100} {
			s := NewStream(context.Background(), gs, Meta{})
			released := 0
			for i := 0; i < len(text); i += size {
				end := min(i+size, len(text))
				r, blocked := s.Push(text[i:end])
				if blocked {
					t.Fatalf("chunk %d: blocked", size)
				}
				released += len(r)
				if lag := end - released; lag > holdBytes+longest {
					t.Fatalf("chunk %d: %d bytes held after %d pushed, want at most %d+%d", size, lag, end, holdBytes, longest)
				}
			}
		}
	}
}

// TestStreamBlockNotDelayed: a blocking guardrail after a redacting one sees each chunk as
// it arrives, and blocks as early, and after releasing as much, as it does alone.
func TestStreamBlockNotDelayed(t *testing.T) {
	topic := mustNew(t, "no-topic", config.GuardrailRegex, func(c *config.Guardrail) {
		c.Patterns = []config.GuardrailPattern{{Name: "FORBIDDEN", Pattern: `(?i)forbidden-topic`}}
	})
	pii := redactor(t, config.GuardrailPII)
	const text = "Here is a long and perfectly harmless introduction to the answer. Now the forbidden-topic details follow here."
	// run pushes text in 5-byte pieces and returns what was released and the index of the
	// piece that blocked.
	run := func(gs []*Guardrail) (string, int) {
		s := NewStream(context.Background(), gs, Meta{})
		var released strings.Builder
		for i := 0; i < len(text); i += 5 {
			r, blocked := s.Push(text[i:min(i+5, len(text))])
			if blocked {
				if id, reason := s.Reason(); id != "no-topic" || reason != `guardrail "no-topic" found a FORBIDDEN` {
					t.Errorf("Reason() = %q, %q", id, reason)
				}
				return released.String(), i
			}
			released.WriteString(r)
		}
		t.Fatalf("%s: no block before Flush", ids(gs))
		return "", 0
	}
	alone, aloneAt := run([]*Guardrail{topic})
	for _, gs := range [][]*Guardrail{{pii, topic}, {topic, pii}} {
		released, at := run(gs)
		if released == "" {
			t.Errorf("%s: nothing released before the block", ids(gs))
		}
		if !strings.HasPrefix(text, released) || len(released) > strings.Index(text, "forbidden") {
			t.Errorf("%s: released %q, want a prefix of the text before \"forbidden\"", ids(gs), released)
		}
		if released != alone || at != aloneAt {
			t.Errorf("%s: released %q and blocked at byte %d; alone, the regex released %q and blocked at %d",
				ids(gs), released, at, alone, aloneAt)
		}
	}
}

func TestStreamBlock(t *testing.T) {
	g := mustNew(t, "pii-block", config.GuardrailPII, nil)
	s := NewStream(context.Background(), []*Guardrail{g}, Meta{})
	var released string
	for _, c := range []string{strings.Repeat("Some harmless text. ", 5), "My card is 4111 1111 11", "11 1111"} {
		r, blocked := s.Push(c)
		if blocked {
			t.Fatalf("blocked at %q before the card was complete", c)
		}
		released += r
	}
	if released == "" {
		t.Error("nothing released before the card")
	}
	r, blocked := s.Push(" and that is all")
	if !blocked || r != "" {
		t.Fatalf("Push after the card = %q, %v; want a block", r, blocked)
	}
	if strings.Contains(released, "4111") {
		t.Errorf("released part of the card: %q", released)
	}
	if id, reason := s.Reason(); id != "pii-block" || reason != `guardrail "pii-block" found a credit_card` {
		t.Errorf("Reason() = %q, %q", id, reason)
	}
	for range 2 {
		if r, blocked := s.Push("more"); r != "" || !blocked {
			t.Errorf("Push after block = %q, %v", r, blocked)
		}
	}
	if r, blocked := s.Flush(); r != "" || !blocked {
		t.Errorf("Flush after block = %q, %v", r, blocked)
	}

	// A match at the very end blocks at Flush.
	s = NewStream(context.Background(), []*Guardrail{g}, Meta{})
	if _, blocked := s.Push("mail alice@example.com"); blocked {
		t.Error("blocked on a match that may still grow")
	}
	if _, blocked := s.Flush(); !blocked {
		t.Error("Flush did not block")
	}
}

// corpus is text with every entity, near-misses and filler, for the property tests.
var corpus = []string{
	"Hello there, how can I help you today? ",
	"Write to alice@example.com or bob.smith+tag@mail.example.co.uk. ",
	"Call +1 415 555 2671 or (415) 555-2671, in London +44 20 7946 0958. ",
	"Card 4111 1111 1111 1111 expires 12/29, the other one is 5555555555554444. ",
	"IBAN DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432. ",
	"SSN 123-45-6789 and host 10.0.0.1 or 2001:db8::8a2e:370:7334. ",
	"Use " + openAISample + " or " + anthropicSample + ". ",
	"AWS AKIAIOSFODNN7EXAMPLE with " + githubSample + " and " + googleSample + ". ",
	"Slack " + slackSample + " then JWT " + jwtSample + " ok. ",
	"Here is a key:\n" + pemSample + "\nDone. ",
	"Not matches: 2024-01-15 12:30:45, version 1.2.3, 4111 1111 1111 1112, user@localhost. ",
	"Numbers 1234567890123456789012 and 3.14159265358979 and 0.5 0.25. ",
	"Grüße aus Köln — 日本語のテキスト 🎉 ñandú. ",
	"A long word: " + strings.Repeat("abcdefghij", 12) + " then a space. ",
	"Codename Bluebird and project-x ship on Friday. ",
	"Adjacent: alice@example.com4111111111111111 x.",
	"\n\n",
}

func corpusText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(corpus[rng.IntN(len(corpus))])
	}
	return b.String()
}

// randomSplit cuts text into chunks of 1 to maxChunk bytes, ignoring rune boundaries.
func randomSplit(rng *rand.Rand, text string, maxChunk int) []string {
	var out []string
	for len(text) > 0 {
		n := min(1+rng.IntN(maxChunk), len(text))
		out = append(out, text[:n])
		text = text[n:]
	}
	return out
}

func TestStreamMatchesCheck(t *testing.T) {
	words := func(action config.GuardrailAction) *Guardrail {
		return mustNew(t, "words-"+string(action), config.GuardrailRegex, func(c *config.Guardrail) {
			c.Action = action
			c.Patterns = []config.GuardrailPattern{{Name: "codename", Pattern: `Codename \w+`}, {Name: "project", Pattern: `project-[a-z]`}}
		})
	}
	redacting := []*Guardrail{redactor(t, config.GuardrailPII), redactor(t, config.GuardrailSecrets), words(config.ActionRedact)}
	blocking := []*Guardrail{mustNew(t, "pii-block", config.GuardrailPII, nil)}
	gss := [][]*Guardrail{redacting, blocking, {words(config.ActionBlock)},
		// Blocking and redacting detectors mixed, in both orders.
		{redactor(t, config.GuardrailPII), words(config.ActionBlock), redactor(t, config.GuardrailSecrets)},
		{words(config.ActionRedact), mustNew(t, "secrets-block", config.GuardrailSecrets, nil), redactor(t, config.GuardrailPII)}}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		text := corpusText(rng, 1+rng.IntN(12))
		chunks := randomSplit(rng, text, []int{1, 3, 16, 80, 400}[i%5])
		for _, gs := range gss {
			want, wantBlocked := checkAll(gs, text)
			rel, blocked := streamAll(t, gs, chunks...)
			if blocked != wantBlocked {
				t.Fatalf("%s: stream blocked %v, Check %v, on %q", ids(gs), blocked, wantBlocked, chunks)
			}
			if got := strings.Join(rel, ""); !blocked && got != want {
				t.Fatalf("%s on %q:\n got %q\nwant %q", ids(gs), chunks, got, want)
			}
		}
	}
}

// fragments are short pieces that, glued at random, make near-misses and entities that
// touch each other: the cases where a scanner could decide differently on part of a text.
var fragments = []string{"sk-", "proj", "a1B2c3D4e5", "-", "_", "eyJhbGciOi", "eyJ", ".", "@", "x", "com",
	"AKIA", "ASIA", "IOSFODNN7EXAMPLE", "gh", "p_", "xoxb-", "AIza", "-----BEGIN ", "RSA PRIVATE KEY", "-----",
	"-----END ", "\n", "ff", "::", "::1", " ", "12", "0123456789", "ABCDEFGHIJKLMNOP", "ant-", "sluice-",
	"github_pat_", "é", "日", "1", "2", "4", "5", "0", "9", "3", "4111", "1111", "+", "(", ")", ":", "a.b",
	"DE", "DE89", "3704", "GB82", "WEST", "00", "415", "555-", "2671", "1.2", "10.0", "123-45-"}

func TestStreamMatchesCheckFragments(t *testing.T) {
	gss := [][]*Guardrail{
		{redactor(t, config.GuardrailPII), redactor(t, config.GuardrailSecrets)},
		{mustNew(t, "pii-block", config.GuardrailPII, nil)},
		{mustNew(t, "secrets-block", config.GuardrailSecrets, nil)},
		{redactor(t, config.GuardrailPII), mustNew(t, "secrets-block", config.GuardrailSecrets, nil)},
		{redactor(t, config.GuardrailSecrets), mustNew(t, "pii-block", config.GuardrailPII, nil)},
		// A blocking match inside a redacted email blocks.
		{redactor(t, config.GuardrailPII), blocker(t, `\.com`), redactor(t, config.GuardrailSecrets)},
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 99))
		var b strings.Builder
		for range 1 + rng.IntN(60) {
			if rng.IntN(6) == 0 {
				b.WriteString(corpus[rng.IntN(len(corpus))])
			} else {
				b.WriteString(fragments[rng.IntN(len(fragments))])
			}
		}
		text := b.String()
		chunks := randomSplit(rng, text, []int{1, 3, 16, 80, 400}[seed%5])
		for _, gs := range gss {
			want, wantBlocked := checkAll(gs, text)
			rel, blocked := streamAll(t, gs, chunks...)
			if got := strings.Join(rel, ""); blocked != wantBlocked || !blocked && got != want {
				t.Fatalf("%s on %q: blocked %v (Check %v)\n got %q\nwant %q", ids(gs), chunks, blocked, wantBlocked, got, want)
			}
		}
	}
}

// TestStreamMatchesCheckLong covers texts past maxHoldBytes: long words and keys whose
// END line comes late, released early with their matches redacted.
func TestStreamMatchesCheckLong(t *testing.T) {
	gss := [][]*Guardrail{
		{redactor(t, config.GuardrailPII), redactor(t, config.GuardrailSecrets)},
		{mustNew(t, "secrets-block", config.GuardrailSecrets, nil)},
		{redactor(t, config.GuardrailSecrets), mustNew(t, "pii-block", config.GuardrailPII, nil)},
		// Rare blocking matches, some inside a key released past maxHoldBytes.
		{redactor(t, config.GuardrailSecrets), blocker(t, `9-_a`)},
	}
	pieces := []string{"abcdefghij", "0123456789", "-", "_", ".", " ", "\n", "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn",
		"-----BEGIN RSA PRIVATE KEY-----\n", "-----END RSA PRIVATE KEY-----", "sk-", "a1B2c3",
		"eyJhbGciOiJIUzI1NiJ9", "alice@example.com", "4111111111111111", "日本"}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		// Each text favours some pieces, so some have few spaces and long words.
		weight := make([]float64, len(pieces))
		for i := range weight {
			weight[i] = rng.Float64()
		}
		var b strings.Builder
		for size := 5000 + rng.IntN(40000); b.Len() < size; {
			if i := rng.IntN(len(pieces)); rng.Float64() < weight[i] {
				b.WriteString(pieces[i])
			}
		}
		text := b.String()
		chunks := randomSplit(rng, text, []int{1, 7, 64, 500, 5000}[seed%5])
		for _, gs := range gss {
			want, wantBlocked := checkAll(gs, text)
			rel, blocked := streamAll(t, gs, chunks...)
			if got := strings.Join(rel, ""); blocked != wantBlocked || !blocked && got != want {
				t.Fatalf("seed %d, %s: blocked %v (Check %v), %d bytes (Check %d)", seed, ids(gs), blocked, wantBlocked, len(got), len(want))
			}
		}
	}
}

func TestStreamUTF8(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailPII)}
	text := "Grüße 日本語 alice@example.com🎉ñ " + strings.Repeat("中文字符和表情😀 ", 8) + "é 4111111111111111 ü"
	want, _ := checkAll(gs, text)
	for p := 1; p < len(text); p++ {
		for _, q := range []int{p + 1, p + 2, p + 3, p + 70} {
			q = min(q, len(text))
			rel, _ := streamAll(t, gs, text[:p], text[p:q], text[q:])
			for _, r := range rel {
				if !utf8.ValidString(r) {
					t.Fatalf("splits %d, %d: release %q is not valid UTF-8", p, q, r)
				}
			}
			if got := strings.Join(rel, ""); got != want {
				t.Fatalf("splits %d, %d:\n got %q\nwant %q", p, q, got, want)
			}
		}
	}
}

func TestStreamPrivateKey(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailSecrets)}
	body := strings.Repeat("MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n", 400) // 26 KB
	text := "Here:\n-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + "-----END OPENSSH PRIVATE KEY-----\nand after it."
	want := "Here:\n[REDACTED:PRIVATE_KEY]\nand after it."
	if got, _ := checkAll(gs, text); got != want {
		t.Fatalf("Check = %q", got)
	}
	for _, size := range []int{5, 64, 1000, 20000} {
		s := NewStream(context.Background(), gs, Meta{})
		var got strings.Builder
		placeholderAt := -1
		for i := 0; i < len(text); i += size {
			r, _ := s.Push(text[i:min(i+size, len(text))])
			if strings.Contains(r, "MIIE") || strings.Contains(r, "BEGIN") {
				t.Fatalf("chunk %d: released key material %q", size, r)
			}
			got.WriteString(r)
			if placeholderAt < 0 && strings.Contains(got.String(), "[REDACTED") {
				placeholderAt = i
			}
		}
		r, _ := s.Flush()
		got.WriteString(r)
		if got.String() != want {
			t.Errorf("chunk %d: got %q, want %q", size, got.String(), want)
		}
		// Held at most maxHoldBytes (plus a chunk), not until the END line.
		if placeholderAt < 0 || placeholderAt > maxHoldBytes+size+64 {
			t.Errorf("chunk %d: placeholder released at %d", size, placeholderAt)
		}
	}
}

func TestStreamLongWord(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailSecrets)}
	text := "start " + strings.Repeat("abcdefgh", 5000) + " end"
	rng := rand.New(rand.NewPCG(3, 4))
	rel, _ := streamAll(t, gs, randomSplit(rng, text, 100)...)
	if got := strings.Join(rel, ""); got != text {
		t.Errorf("long word changed: %d bytes out of %d", len(got), len(text))
	}
	// Bounded: released before the word ends.
	early := 0
	for _, r := range rel[:len(rel)-1] {
		early += len(r)
	}
	if early < len(text)-maxHoldBytes-200 {
		t.Errorf("only %d of %d bytes released before Flush", early, len(text))
	}
}

func TestStreamPassthrough(t *testing.T) {
	reqOnly := mustNew(t, "req", config.GuardrailPII, func(c *config.Guardrail) {
		c.Directions = []config.GuardrailDirection{config.DirectionRequest}
	})
	s := NewStream(context.Background(), []*Guardrail{reqOnly}, Meta{})
	in := "mail alice@example.com"
	if r, blocked := s.Push(in); r != in || blocked {
		t.Errorf("Push = %q, %v", r, blocked)
	}
	if n := testing.AllocsPerRun(100, func() { s.Push(in) }); n != 0 {
		t.Errorf("pass-through Push allocates %.0f times", n)
	}
	if r, blocked := s.Flush(); r != "" || blocked {
		t.Errorf("Flush = %q, %v", r, blocked)
	}
}

func TestStreamWebhookWindows(t *testing.T) {
	text := strings.Repeat("0123456789", 5) + "abcde" // 55 runes
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request, hookRequest)
		open    bool
		want    string
		blocked string // the reason, when the stream blocks
	}{
		{name: "allow", answer: reply(`{"action":"allow"}`), want: text},
		{name: "modify", answer: upper, want: strings.ToUpper(text)},
		{name: "modify text", answer: func(w http.ResponseWriter, _ *http.Request, req hookRequest) {
			_ = json.NewEncoder(w).Encode(map[string]string{"action": "modify", "text": "[" + req.Text + "]"})
		}, want: "[0123456789012345][6789012345678901][2345678901234567][89abcde]"},
		{name: "block", answer: reply(`{"action":"block","reason":"nope"}`), blocked: "guardrail hook: nope"},
		{name: "block/fail_open", answer: reply(`{"action":"block","reason":"nope"}`), open: true, blocked: "guardrail hook: nope"},
		{name: "fail_closed", answer: reply(`{`), blocked: "guardrail hook is unavailable"},
		{name: "fail_open", answer: reply(`{`), open: true, want: text},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHook(t, tc.answer)
			g := hookGuard(t, "hook", h.URL, func(c *config.Guardrail) {
				c.Webhook.WindowChars = 16
				if tc.open {
					failOpen(c)
				}
			})
			s := NewStream(context.Background(), []*Guardrail{g}, Meta{RequestID: "req-9"})
			var got strings.Builder
			for i := 0; i < len(text); i += 4 {
				r, blocked := s.Push(text[i:min(i+4, len(text))])
				got.WriteString(r)
				if blocked {
					if _, reason := s.Reason(); reason != tc.blocked {
						t.Errorf("reason %q, want %q", reason, tc.blocked)
					}
					if h.count() != 1 || i != 12 {
						t.Errorf("blocked at byte %d after %d calls, want at the first window", i, h.count())
					}
					return
				}
			}
			r, blocked := s.Flush()
			got.WriteString(r)
			if blocked || tc.blocked != "" {
				t.Fatalf("blocked %v, want %q", blocked, tc.blocked)
			}
			if got.String() != tc.want {
				t.Errorf("released %q, want %q", got.String(), tc.want)
			}
			// Windows of 16: 4 pushes each, then the rest at Flush.
			want := [][]string{{text[:16]}, {text[16:32]}, {text[32:48]}, {text[48:]}}
			if calls := h.texts(); len(calls) != len(want) || strings.Join(flat(calls), "|") != strings.Join(flat(want), "|") {
				t.Errorf("webhook saw %q, want %q", calls, want)
			}
			if c := h.calls[0]; c.Direction != "stream" || c.RequestID != "req-9" || c.GuardrailID != "hook" || c.Text != text[:16] {
				t.Errorf("first call %+v", c)
			}
		})
	}
}

func flat(xs [][]string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x...)
	}
	return out
}

func TestStreamWebhookTimeout(t *testing.T) {
	for _, open := range []bool{false, true} {
		h := newFakeHook(t, stall(t))
		g := hookGuard(t, "slow", h.URL, func(c *config.Guardrail) {
			c.TimeoutMS = 50
			c.Webhook.WindowChars = 4
			if open {
				failOpen(c)
			}
		})
		rel, blocked := streamAll(t, []*Guardrail{g}, "abcdef", "gh")
		if open {
			if got := strings.Join(rel, ""); blocked || got != "abcdefgh" {
				t.Errorf("fail_open: %q, blocked %v", got, blocked)
			}
			if h.count() != 2 {
				t.Errorf("fail_open: %d calls, want 2", h.count())
			}
		} else if !blocked || len(rel) != 0 {
			t.Errorf("fail_closed: released %q, blocked %v", rel, blocked)
		}
	}
}

func TestStreamDetectorsBeforeWebhook(t *testing.T) {
	h := newFakeHook(t, reply(`{"action":"allow"}`))
	gs := []*Guardrail{hookGuard(t, "hook", h.URL, func(c *config.Guardrail) { c.Webhook.WindowChars = 8 }),
		redactor(t, config.GuardrailPII)}
	text := "reach me at alice@example.com or at +1 415 555 2671, thanks é"
	rng := rand.New(rand.NewPCG(5, 6))
	rel, _ := streamAll(t, gs, randomSplit(rng, text, 5)...)
	want, _ := checkAll(gs[1:], text)
	if got := strings.Join(rel, ""); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var seen strings.Builder
	for _, c := range h.texts() {
		if !utf8.ValidString(c[0]) {
			t.Errorf("webhook got invalid UTF-8 %q", c[0])
		}
		seen.WriteString(c[0])
	}
	if seen.String() != want {
		t.Errorf("webhook saw %q, want the redacted %q", seen.String(), want)
	}
}

func TestStreamWebhookRuneBoundary(t *testing.T) {
	h := newFakeHook(t, reply(`{"action":"allow"}`))
	g := hookGuard(t, "hook", h.URL, func(c *config.Guardrail) { c.Webhook.WindowChars = 3 })
	text := "日本語のテキスト"
	var chunks []string
	for i := range len(text) {
		chunks = append(chunks, text[i:i+1])
	}
	rel, _ := streamAll(t, []*Guardrail{g}, chunks...)
	if got := strings.Join(rel, ""); got != text {
		t.Errorf("got %q", got)
	}
	for _, c := range h.texts() {
		if !utf8.ValidString(c[0]) {
			t.Errorf("webhook got %q", c[0])
		}
	}
}
