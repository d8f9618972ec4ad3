package cachectl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// reference is Strip done the slow way, on encoding/json's tokens: it returns the tokens
// of body without the cache_control members Strip must remove, and how many it dropped.
func reference(t testing.TB, body []byte) (tokens []string, dropped int) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object, expectKey bool
		reached           bool   // cache_control members of this object are removed
		depth             int    // enclosing objects
		key               string // the member whose value is being read
	}
	var stack []frame
	skip := 0 // containers of a dropped value still open
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return tokens, dropped
		}
		if err != nil {
			t.Fatalf("reference: %v", err)
		}
		if skip > 0 {
			switch tok {
			case json.Delim('{'), json.Delim('['):
				skip++
			case json.Delim('}'), json.Delim(']'):
				skip--
			}
			continue
		}
		var top *frame
		if n := len(stack); n > 0 {
			top = &stack[n-1]
		}
		if key, ok := tok.(string); ok && top != nil && top.object && top.expectKey {
			if top.reached && strings.EqualFold(key, "cache_control") {
				dropped++
				tok, err := dec.Token() // the value
				if err != nil {
					t.Fatalf("reference: %v", err)
				}
				if tok == json.Delim('{') || tok == json.Delim('[') {
					skip = 1
				}
				continue
			}
			top.key, top.expectKey = key, false
			tokens = append(tokens, fmt.Sprintf("k%q", key))
			continue
		}
		tokens = append(tokens, fmt.Sprintf("%T%v", tok, tok))
		switch tok {
		case json.Delim('{'), json.Delim('['):
			f := frame{object: tok == json.Delim('{'), expectKey: true}
			switch {
			case top == nil:
				f.reached = true
			case !top.object: // array elements: as the array
				f.reached, f.depth = top.reached, top.depth
			default:
				f.depth = top.depth + 1
				f.reached = top.reached && descend(top.key, top.depth)
			}
			stack = append(stack, f)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
}

// FuzzStripForce: on any input Strip and Force never panic; on valid JSON, Strip removes
// exactly the members the reference drops and nothing else, and Force gives valid JSON
// with at most 3 breakpoints, which Force leaves alone.
func FuzzStripForce(f *testing.F) {
	for _, s := range []string{
		`{"cache_control":{},"system":[{"cache_control":1,"type":"text","cache_control":[2]}],"tools":[{"input_schema":{"cache_control":1}}]}`,
		`{"system":"s","messages":[{"role":"user","content":"x"}],"tools":[{}]}`,
		`{"messages":[{"content":[{"type":"thinking"},{"Cache_Control":null}]}]}`,
		`{"messages":[{"content":[{"cache\u005fcontrol":1,"a":"\"cache_control\":1"}]}]}`,
		"{\n \"system\" : [ { \"cache_control\" : { } , \"x\" : 1 } ] }",
		`{"messages":[[[[{"cache_control":1}]]]]}`, `{"messages":[{"cache_control":`, `[]`, `{"a":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		stripped, changed := Strip(body)
		forced, added := Force(body)
		has := HasCacheControl(body)
		if !bytes.Equal(body, orig) {
			t.Fatal("the input was written to")
		}
		if !json.Valid(body) {
			return
		}
		want, dropped := reference(t, body)
		if !json.Valid(stripped) {
			t.Fatalf("Strip gave invalid JSON: %s", stripped)
		}
		if got, _ := reference(t, stripped); !slices.Equal(got, want) {
			t.Fatalf("Strip(%s) = %s\n got tokens %q\nwant tokens %q", body, stripped, got, want)
		}
		if changed != (dropped > 0) || has != (dropped > 0) || HasCacheControl(stripped) {
			t.Fatalf("changed=%v has=%v dropped=%d", changed, has, dropped)
		}
		if !json.Valid(forced) {
			t.Fatalf("Force gave invalid JSON: %s", forced)
		}
		if _, n := reference(t, forced); added && (has || n == 0 || n > 3) || !added && !bytes.Equal(forced, body) {
			t.Fatalf("Force(%s) = %s, %v: %d breakpoints", body, forced, added, n)
		}
		if again, changed := Force(forced); changed || !bytes.Equal(again, forced) {
			t.Fatalf("Force is not idempotent on %s", forced)
		}
	})
}
