package logging

import (
	"errors"
	"io"
	"log/slog"
	"testing"
)

// Benchmarks for the redactor and the handler. Compare runs with benchstat:
//
//	go test -run x -bench . -benchmem -count 10 ./internal/logging/ > old.txt
//	(change)
//	go test -run x -bench . -benchmem -count 10 ./internal/logging/ > new.txt
//	benchstat old.txt new.txt

var (
	cleanShort = "request finished"
	cleanLong  = `proxy attempt failed: provider=openai status=502 model=gpt-4o key_id=key_01JD4Z8Q6G7W3XK2M5N9P0R1S2 ` +
		`took 1.2s: Post "https://api.openai.com/v1/chat/completions": dial tcp 10.0.0.1:443: connect: connection refused`
	dirty = `upstream said 401 for Authorization: Bearer ` + bearerTok + ` (key ` + sluiceKey + `)`
)

func BenchmarkRedact(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"clean-short", cleanShort}, {"clean-long", cleanLong}, {"dirty", dirty},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				_ = Redact(c.s)
			}
		})
	}
}

func BenchmarkHandler(b *testing.B) {
	err := errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
	logRecord := func(l *slog.Logger) {
		l.Info("proxy attempt failed", "provider", "openai", "status", 502, "model", "gpt-4o",
			"key_id", "key_01JD4Z8Q6G7W3XK2M5N9P0R1S2", "err", err)
	}
	b.Run("plain-json", func(b *testing.B) {
		l := slog.New(slog.NewJSONHandler(io.Discard, nil))
		b.ReportAllocs()
		for b.Loop() {
			logRecord(l)
		}
	})
	b.Run("redacting-json-clean", func(b *testing.B) {
		l := New(io.Discard, slog.LevelInfo, true)
		b.ReportAllocs()
		for b.Loop() {
			logRecord(l)
		}
	})
	b.Run("redacting-json-dirty", func(b *testing.B) {
		l := New(io.Discard, slog.LevelInfo, true)
		b.ReportAllocs()
		for b.Loop() {
			l.Info("proxy attempt failed", "provider", "openai", "status", 401, "model", "gpt-4o",
				"key_id", "key_01", "err", errors.New(dirty))
		}
	})
	b.Run("disabled", func(b *testing.B) {
		l := New(io.Discard, slog.LevelWarn, true)
		b.ReportAllocs()
		for b.Loop() {
			logRecord(l)
		}
	})
}
