package dispatcher

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The usage chunk is removed, and every other byte relayed as received, wherever the
// provider's reads happen to cut the stream.
func TestSSEFramerEverySplit(t *testing.T) {
	const (
		a     = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}"
		b     = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}"
		usage = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"
		done  = "data: [DONE]"
	)
	for _, nl := range []string{"\n", "\r\n"} {
		ev := func(s string) string { return s + nl + nl }
		in := ": keep-alive" + nl + nl + ev(a) + ev(b) + ev(usage) + ev(done)
		want := ": keep-alive" + nl + nl + ev(a) + ev(b) + ev(done)
		for i := 0; i <= len(in); i++ {
			for _, j := range []int{i, (i + len(in)) / 2, len(in)} {
				rec := httptest.NewRecorder()
				f := &sseFramer{ResponseWriter: rec, dropUsage: true}
				for _, p := range []string{in[:i], in[i:j], in[j:]} {
					if n, err := f.Write([]byte(p)); n != len(p) || err != nil {
						t.Fatalf("Write: %d, %v", n, err)
					}
				}
				f.flushRest()
				if got := rec.Body.String(); got != want {
					t.Fatalf("newline %q, cut at %d and %d:\ngot  %q\nwant %q", nl, i, j, got, want)
				}
			}
		}
	}
}

// A stream cut inside an event still gets every byte that arrived.
func TestSSEFramerCutStream(t *testing.T) {
	rec := httptest.NewRecorder()
	f := &sseFramer{ResponseWriter: rec, dropUsage: true}
	in := "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"choi"
	_, _ = f.Write([]byte(in))
	f.flushRest()
	if rec.Body.String() != in {
		t.Fatalf("got %q", rec.Body.String())
	}
	if !strings.HasSuffix(rec.Body.String(), "choi") {
		t.Fatal("partial event lost")
	}
}
