package guardrail

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
)

// benchGuards are a typical attachment: PII and secrets redaction and a small deny list.
func benchGuards(b *testing.B) []*Guardrail {
	return []*Guardrail{redactor(b, config.GuardrailPII), redactor(b, config.GuardrailSecrets),
		mustNew(b, "words", config.GuardrailRegex, func(c *config.Guardrail) {
			c.Action = config.ActionRedact
			c.Patterns = []config.GuardrailPattern{{Name: "codename", Pattern: `Project (Bluebird|Nightjar)`}}
		})}
}

// withMatches is a 4 KiB prompt with an email, a phone number, a card and a key in it.
func withMatches() string {
	p := prose(4 << 10)
	ins := []string{" alice@example.com ", " +1 415 555 2671 ", " 4111 1111 1111 1111 ", " " + openAISample + " "}
	var b strings.Builder
	step := len(p) / (len(ins) + 1)
	for i, s := range ins {
		b.WriteString(p[i*step : (i+1)*step])
		b.WriteString(s)
	}
	b.WriteString(p[len(ins)*step:])
	return b.String()
}

// words returns about n bytes of prose without digits, the common case.
func words(n int) string {
	const para = "Please summarize the following meeting notes for the team. We discussed the " +
		"roadmap, the hiring plan and the migration to the new build system; everyone agreed " +
		"that the documentation needs work before the release. Ask questions in the channel.\n"
	return strings.Repeat(para, n/len(para)+1)[:n]
}

// BenchmarkCheck measures Check over a ~4 KiB prompt with the usual detectors: one dense
// with numbers but no match, one of plain words, and one with four matches.
//
//	go test -run x -bench . -benchmem -count 10 ./extproc/guardrail/ > new.txt && benchstat old.txt new.txt
func BenchmarkCheck(b *testing.B) {
	gs := benchGuards(b)
	for _, bc := range []struct {
		name string
		text string
	}{{"no_match", prose(4 << 10)}, {"no_match_words", words(4 << 10)}, {"matches", withMatches()}} {
		b.Run(bc.name, func(b *testing.B) {
			texts := []string{"You are a helpful assistant.", bc.text}
			b.SetBytes(int64(len(bc.text)))
			b.ReportAllocs()
			for b.Loop() {
				Check(context.Background(), gs, config.DirectionRequest, Meta{}, texts)
			}
		})
	}
}

// BenchmarkStream measures a streamed 4 KiB answer in 8-byte chunks (about two tokens
// each), through the same detectors, and the pass-through cost without stream guardrails.
func BenchmarkStream(b *testing.B) {
	text := withMatches()
	var chunks []string
	for i := 0; i < len(text); i += 8 {
		chunks = append(chunks, text[i:min(i+8, len(text))])
	}
	run := func(b *testing.B, gs []*Guardrail) {
		b.SetBytes(int64(len(text)))
		b.ReportAllocs()
		for b.Loop() {
			s := NewStream(context.Background(), gs, Meta{})
			for _, c := range chunks {
				s.Push(c)
			}
			s.Flush()
		}
	}
	b.Run("detectors", func(b *testing.B) { run(b, benchGuards(b)) })
	b.Run("passthrough", func(b *testing.B) { run(b, nil) })
}
