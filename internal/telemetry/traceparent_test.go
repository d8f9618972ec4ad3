package telemetry

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

const (
	testTraceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanHex  = "00f067aa0ba902b7"
)

func TestParseTraceparent(t *testing.T) {
	tp := func(version, tid, sid, flags string) string {
		return version + "-" + tid + "-" + sid + "-" + flags
	}
	zeroTrace := strings.Repeat("0", 32)
	zeroSpan := strings.Repeat("0", 16)
	tests := []struct {
		name    string
		in      string
		ok      bool
		sampled bool
	}{
		{"sampled", tp("00", testTraceHex, testSpanHex, "01"), true, true},
		{"not sampled", tp("00", testTraceHex, testSpanHex, "00"), true, false},
		{"unknown flag bits ignored", tp("00", testTraceHex, testSpanHex, "09"), true, true},
		{"unknown flag bits, not sampled", tp("00", testTraceHex, testSpanHex, "fe"), true, false},
		{"future version", tp("01", testTraceHex, testSpanHex, "01"), true, true},
		{"future version with extra fields", tp("cc", testTraceHex, testSpanHex, "01") + "-what-the-future-holds", true, true},
		{"future version, extra data without dash", tp("cc", testTraceHex, testSpanHex, "01") + "x", false, false},
		{"version ff", tp("ff", testTraceHex, testSpanHex, "01"), false, false},
		{"version 00 with extra fields", tp("00", testTraceHex, testSpanHex, "01") + "-extra", false, false},
		{"version 00 with trailing byte", tp("00", testTraceHex, testSpanHex, "01") + " ", false, false},
		{"empty", "", false, false},
		{"too short", tp("00", testTraceHex, testSpanHex, "0"), false, false},
		{"trace id too short", tp("00", testTraceHex[:31], testSpanHex, "01"), false, false},
		{"trace id too long", tp("00", testTraceHex+"0", testSpanHex, "01"), false, false},
		{"span id too short", tp("00", testTraceHex, testSpanHex[:15], "01"), false, false},
		{"span id too long", tp("00", testTraceHex, testSpanHex+"0", "01"), false, false},
		{"uppercase trace id", tp("00", strings.ToUpper(testTraceHex), testSpanHex, "01"), false, false},
		{"uppercase span id", tp("00", testTraceHex, "00F067AA0BA902B7", "01"), false, false},
		{"uppercase version", tp("0A", testTraceHex, testSpanHex, "01"), false, false},
		{"uppercase flags", tp("00", testTraceHex, testSpanHex, "0A"), false, false},
		{"zero trace id", tp("00", zeroTrace, testSpanHex, "01"), false, false},
		{"zero span id", tp("00", testTraceHex, zeroSpan, "01"), false, false},
		{"non-hex", tp("00", "4bf92f3577b34da6a3ce929d0e0e473g", testSpanHex, "01"), false, false},
		{"wrong separator", "00_" + testTraceHex + "-" + testSpanHex + "-01", false, false},
		{"leading space", " " + tp("00", testTraceHex, testSpanHex, "01"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseTraceparent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ParseTraceparent(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if !ok {
				if got != (TraceContext{}) {
					t.Errorf("ParseTraceparent(%q) = %+v with ok false, want the zero value", tt.in, got)
				}
				return
			}
			if got.TraceID.String() != testTraceHex || got.SpanID.String() != testSpanHex {
				t.Errorf("ParseTraceparent(%q) ids = %s %s, want %s %s", tt.in, got.TraceID, got.SpanID, testTraceHex, testSpanHex)
			}
			if got.Sampled != tt.sampled {
				t.Errorf("ParseTraceparent(%q) Sampled = %v, want %v", tt.in, got.Sampled, tt.sampled)
			}
		})
	}
}

func TestTraceparentFormat(t *testing.T) {
	tid, _ := trace.TraceIDFromHex(testTraceHex)
	sid, _ := trace.SpanIDFromHex(testSpanHex)
	for _, sampled := range []bool{true, false} {
		tc := TraceContext{TraceID: tid, SpanID: sid, Sampled: sampled}
		want := "00-" + testTraceHex + "-" + testSpanHex + "-00"
		if sampled {
			want = want[:len(want)-1] + "1"
		}
		got := tc.Traceparent()
		if got != want {
			t.Errorf("Traceparent() = %q, want %q", got, want)
		}
		back, ok := ParseTraceparent(got)
		if !ok || back != tc {
			t.Errorf("ParseTraceparent(%q) = %+v, %v; want %+v, true", got, back, ok, tc)
		}
	}
}

func TestNewIDs(t *testing.T) {
	seenT := map[trace.TraceID]bool{}
	seenS := map[trace.SpanID]bool{}
	for range 1000 {
		tid, sid := NewTraceID(), NewSpanID()
		if !tid.IsValid() || !sid.IsValid() {
			t.Fatalf("invalid ids %s %s", tid, sid)
		}
		if seenT[tid] || seenS[sid] {
			t.Fatalf("repeated id %s %s", tid, sid)
		}
		seenT[tid], seenS[sid] = true, true
	}
}

func BenchmarkParseTraceparent(b *testing.B) {
	h := "00-" + testTraceHex + "-" + testSpanHex + "-01"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseTraceparent(h); !ok {
			b.Fatal("not parsed")
		}
	}
}
