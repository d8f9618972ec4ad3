package extproc

import "testing"

// BenchmarkProcessChat measures one full admission on the fake stream: headers (key lookup,
// strip and stamp) then body (field scan, routing, token signing).
//
//	go test -run x -bench ProcessChat -benchmem -count 10 ./extproc/ > new.txt && benchstat old.txt new.txt
func BenchmarkProcessChat(b *testing.B) {
	f := newFixture(b)
	s := newStream(b,
		headersMsg("POST", "/v1/chat/completions", false,
			"authorization", f.bearer("vk_main"), "content-type", "application/json",
			"content-length", "120", "user-agent", "OpenAI/Python 1.99.0", "x-stainless-lang", "python"),
		bodyMsg(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`))
	b.ReportAllocs()
	for b.Loop() {
		s.reset()
		if err := f.srv.Process(s); err != nil {
			b.Fatal(err)
		}
		if len(s.sent) != 2 || s.sent[1].GetRequestBody() == nil {
			b.Fatalf("unexpected responses %v", s.sent)
		}
	}
}
