package fakeprovider

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
)

// vectors returns the embeddings of a decoded answer, decoding base64 ones.
func vectors(t *testing.T, m map[string]any) [][]float32 {
	t.Helper()
	var out [][]float32
	for i, d := range m["data"].([]any) {
		if get(d, "object") != "embedding" || num(get(d, "index")) != i {
			t.Fatalf("data[%d] = %v", i, d)
		}
		var v []float32
		switch e := get(d, "embedding").(type) {
		case string:
			b, err := base64.StdEncoding.DecodeString(e)
			if err != nil || len(b)%4 != 0 {
				t.Fatalf("base64 embedding %q: %v", e, err)
			}
			for j := 0; j < len(b); j += 4 {
				v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(b[j:])))
			}
		case []any:
			for _, f := range e {
				v = append(v, float32(f.(float64)))
			}
		default:
			t.Fatalf("embedding %T", e)
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddings(t *testing.T) {
	fake, ts := newTest(t)
	cases := []struct {
		name, input string
		keys        []string // embed keys of the expected vectors
	}{
		{"string", `"hello MARK"`, []string{"s:hello MARK"}},
		{"strings", `["a","b","a"]`, []string{"s:a", "s:b", "s:a"}},
		{"tokens", `[1, 2,3]`, []string{"t:[1,2,3]"}},
		{"token arrays", `[[1,2],[3]]`, []string{"t:[1,2]", "t:[3]"}},
		{"mixed", `["a",[3]]`, []string{"s:a", "t:[3]"}},
	}
	for _, c := range cases {
		for _, format := range []string{"", "float", "base64"} {
			t.Run(c.name+"/"+format, func(t *testing.T) {
				extra := ""
				if format != "" {
					extra = fmt.Sprintf(`,"encoding_format":%q`, format)
				}
				body := fmt.Sprintf(`{"model":"text-embedding-3-small","input":%s%s}`, c.input, extra)
				resp := post(t, t.Context(), ts.URL+"/v1/embeddings", body, oaAuth()...)
				m := decode(t, resp)
				if resp.StatusCode != 200 || m["object"] != "list" || m["model"] != "text-embedding-3-small" {
					t.Fatalf("status %d: %v", resp.StatusCode, m)
				}
				if _, isB64 := get(m, "data", 0, "embedding").(string); isB64 != (format == "base64") {
					t.Fatalf("format %q: embedding %T", format, get(m, "data", 0, "embedding"))
				}
				got := vectors(t, m)
				if len(got) != len(c.keys) {
					t.Fatalf("%d vectors, want %d", len(got), len(c.keys))
				}
				for i, v := range got {
					want := embed(c.keys[i], EmbeddingDims)
					if fmt.Sprint(v) != fmt.Sprint(want) {
						t.Fatalf("vector %d = %v, want %v", i, v, want)
					}
					var norm float64
					for _, f := range v {
						norm += float64(f) * float64(f)
					}
					if math.Abs(norm-1) > 1e-5 {
						t.Fatalf("vector %d norm² %v", i, norm)
					}
				}
				if u := m["usage"]; num(get(u, "prompt_tokens")) != tokens(body) || num(get(u, "total_tokens")) != tokens(body) {
					t.Fatalf("usage %v", u)
				}
			})
		}
	}
	if a, b := embed("s:a", 8), embed("s:b", 8); fmt.Sprint(a) == fmt.Sprint(b) {
		t.Fatal("different inputs, same vector")
	}

	m := decode(t, post(t, t.Context(), ts.URL+"/v1/embeddings", `{"model":"m","input":"x","dimensions":20}`, oaAuth()...))
	if v := vectors(t, m); len(v[0]) != 20 || fmt.Sprint(v[0][:8]) == fmt.Sprint(v[0][8:16]) {
		t.Fatalf("dimensions 20: %v", v)
	}

	for _, bad := range []string{
		`{"model":"m","input":""}`, `{"model":"m","input":[]}`, `{"model":"m","input":[""]}`, `{"model":"m"}`,
		`{"model":"m","input":[[]]}`, `{"model":"m","input":[1,"a"]}`, `{"model":"m","input":{"a":1}}`,
		`{"input":"x"}`, `{"model":"m","input":"x","encoding_format":"hex"}`, `{"model":"m","input":"x","dimensions":0}`,
	} {
		resp := post(t, t.Context(), ts.URL+"/v1/embeddings", bad, oaAuth()...)
		if m := decode(t, resp); resp.StatusCode != 400 || get(m, "error", "type") != "invalid_request_error" {
			t.Errorf("%s: status %d %v", bad, resp.StatusCode, m)
		}
	}

	fake.Script("MARK", Script{Usage: &Usage{InputTokens: 5, OutputTokens: 9}})
	m = decode(t, post(t, t.Context(), ts.URL+"/v1/embeddings", `{"model":"m","input":["MARK"]}`, oaAuth()...))
	if u := m["usage"]; num(get(u, "prompt_tokens")) != 5 || num(get(u, "total_tokens")) != 5 {
		t.Fatalf("scripted usage %v", u)
	}
	fake.Script("MARK", Script{Status: 503})
	if resp := post(t, t.Context(), ts.URL+"/v1/embeddings", `{"model":"m","input":["MARK"]}`, oaAuth()...); resp.StatusCode != 503 ||
		get(decode(t, resp), "error", "type") != "server_error" {
		t.Fatalf("scripted 503: %d", resp.StatusCode)
	}
	if n := len(fake.Requests("MARK")); n < 2 {
		t.Fatalf("%d recorded embeddings requests", n)
	}
}
