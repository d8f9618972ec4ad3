package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestAccessLog(t *testing.T) {
	full := AccessRecord{
		RequestID: "req_01", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		Route: "chat_completions", Method: "POST", Status: 200, ErrorCode: "x",
		KeyID: "key_01", OrganizationID: "org_1", TeamID: "team_1", ProjectID: "proj_1", PrincipalID: "usr_1",
		Model: "gpt-4o", Provider: "openai", FallbackCount: 1,
		InputTokens: 120, OutputTokens: 40, CacheReadTokens: 1000, CacheCreationTokens: 7,
		CostNanoUSD: 123_000,
		Duration:    1234567 * time.Microsecond, ProviderDuration: 1200 * time.Millisecond, TimeToFirstToken: 250500 * time.Microsecond,
		Stream: true, CacheMode: "respect", Guardrail: "gr_pii", BudgetWarning: "bud_1",
	}
	for _, c := range []struct {
		name string
		r    AccessRecord
		want map[string]any
	}{
		{"full", full, map[string]any{
			"request_id": "req_01", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
			"route": "chat_completions", "method": "POST", "status": 200.0, "error_code": "x",
			"key_id": "key_01", "organization_id": "org_1", "team_id": "team_1", "project_id": "proj_1", "principal_id": "usr_1",
			"model": "gpt-4o", "provider": "openai", "fallback_count": 1.0,
			"input_tokens": 120.0, "output_tokens": 40.0, "cache_read_tokens": 1000.0, "cache_creation_tokens": 7.0,
			"cost_usd": "0.000123000", "duration_ms": 1234.567, "provider_ms": 1200.0, "ttft_ms": 250.5,
			"stream": true, "cache_mode": "respect", "guardrail": "gr_pii", "budget_warning": "bud_1",
		}},
		{"refused: optional fields omitted", AccessRecord{RequestID: "req_02", Route: "messages", Method: "POST",
			Status: 401, ErrorCode: "invalid_api_key", Duration: 42 * time.Microsecond},
			map[string]any{"request_id": "req_02", "route": "messages", "method": "POST", "status": 401.0,
				"error_code": "invalid_api_key", "duration_ms": 0.042}},
		{"zero", AccessRecord{}, map[string]any{"request_id": "", "route": "", "method": "", "status": 0.0, "duration_ms": 0.0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			AccessLog(New(&buf, slog.LevelInfo, true), c.r)
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, buf.Bytes())
			}
			if got["msg"] != "access" || got["level"] != "INFO" {
				t.Errorf("msg=%v level=%v", got["msg"], got["level"])
			}
			delete(got, "msg")
			delete(got, "level")
			delete(got, "time")
			if !maps.Equal(got, c.want) {
				gk, wk := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(c.want))
				t.Errorf("fields\n got %v\nwant %v", gk, wk)
				for k, w := range c.want {
					if got[k] != w {
						t.Errorf("%s = %#v, want %#v", k, got[k], w)
					}
				}
			}
		})
	}
}

func TestAccessLogDisabledOrNil(t *testing.T) {
	var buf bytes.Buffer
	AccessLog(New(&buf, slog.LevelWarn, true), AccessRecord{RequestID: "r"})
	AccessLog(nil, AccessRecord{RequestID: "r"})
	if buf.Len() != 0 {
		t.Errorf("logged below level: %s", buf.String())
	}
}

func TestFormatUSD(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0.000000000"}, {1, "0.000000001"}, {123_000, "0.000123000"}, {1_500_000_000, "1.500000000"},
		{12_345_678_901_234, "12345.678901234"}, {-2_500_000_000, "-2.500000000"},
		{-9223372036854775808, "-9223372036.854775808"}, {9223372036854775807, "9223372036.854775807"},
	} {
		if got := formatUSD(c.n); got != c.want {
			t.Errorf("formatUSD(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func BenchmarkAccessLog(b *testing.B) {
	l := New(io.Discard, slog.LevelInfo, true)
	r := AccessRecord{
		RequestID: "01JD4Z8Q6G7W3XK2M5N9P0R1S2", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		Route: "chat_completions", Method: "POST", Status: 200,
		KeyID: "key_01JD4Z8Q6G7W3XK2M5N9P0R1S2", OrganizationID: "org_acme", TeamID: "team_eng", ProjectID: "proj_bot",
		Model: "gpt-4o", Provider: "openai", InputTokens: 1200, OutputTokens: 340, CostNanoUSD: 6_400_000,
		Duration: 1800 * time.Millisecond, ProviderDuration: 1799 * time.Millisecond, TimeToFirstToken: 210 * time.Millisecond,
		Stream: true,
	}
	b.Run("redacting", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			AccessLog(l, r)
		}
	})
	b.Run("plain-json", func(b *testing.B) { // the same record without redaction, for comparison
		l := slog.New(slog.NewJSONHandler(io.Discard, nil))
		b.ReportAllocs()
		for b.Loop() {
			AccessLog(l, r)
		}
	})
}
