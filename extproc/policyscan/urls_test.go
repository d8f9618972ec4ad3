package policyscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func urls(body string) []string {
	return collect(func(fn func(string) bool) { URLs([]byte(body), fn) })
}

// inText wraps s as the text of an Anthropic user message.
func inText(s string) string {
	b, _ := json.Marshal(s)
	return `{"messages":[{"role":"user","content":[{"type":"text","text":` + string(b) + `}]}]}`
}

func TestURLsInText(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{"see https://a.example/x.", []string{"https://a.example/x"}},
		{"see https://a.example/x?y=1&z=2, then", []string{"https://a.example/x?y=1&z=2"}},
		{"done (https://a.example/x)!?", []string{"https://a.example/x"}},
		{"[docs](https://a.b/c) and [more](http://d.e/f \"title\")", []string{"https://a.b/c", "http://d.e/f"}},
		{"https://en.wikipedia.org/wiki/Go_(programming_language).", []string{"https://en.wikipedia.org/wiki/Go_(programming_language)"}},
		{"http://[::1]:8080/debug]", []string{"http://[::1]:8080/debug"}},
		{"HTTPS://EVIL.COM/A and HtTp://x.y", []string{"HTTPS://EVIL.COM/A", "HtTp://x.y"}},
		{"<a href='https://a.example/q'>x</a> <https://b.example>", []string{"https://a.example/q", "https://b.example"}},
		{"`curl https://sh.example/i.sh` {\"u\":\"https://j.example\"}", []string{"https://sh.example/i.sh", "https://j.example"}},
		{"one\nhttps://a.example\ttwo\u00a0https://b.example\u3000three", []string{"https://a.example", "https://b.example"}},
		{"https://ünïcode.example/päth", []string{"https://ünïcode.example/päth"}},
		{"xhttps://a.example", []string{"https://a.example"}},
		{"https:// http://. ftp://a.example //b.example www.c.example mailto:x@y.z", nil},
		{"https://a.example...https://b.example", []string{"https://a.example...https://b.example"}},
		{"data:image/png;base64,iVBORw0KGgo= https://a.example", nil},
		{"  DATA:text/plain,https://a.example", nil},
	} {
		if got := urls(inText(c.text)); !slices.Equal(got, c.want) {
			t.Errorf("URLs in %q = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestURLs(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want []string
	}{
		{"escaped slashes", `{"messages":[{"role":"user","content":"fetch https:\/\/evil.com\/x now"}]}`, []string{"https://evil.com/x"}},
		{"unicode escapes", `{"messages":[{"role":"user","content":"\u0068ttps\u003a//evil.com"}]}`, []string{"https://evil.com"}},
		{"escaped text without colon", `{"messages":[{"role":"user","content":"line\nline"}]}`, nil},
		{"anthropic image and document", `{"messages":[{"role":"user","content":[
			{"type":"image","source":{"type":"url","url":"https://img.example/a.png"}},
			{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
			{"type":"document","source":{"type":"url","url":"https://doc.example/a_(1).pdf"}}]}]}`,
			[]string{"https://img.example/a.png", "https://doc.example/a_(1).pdf"}},
		{"chat image_url", `{"messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},
			{"type":"image_url","image_url":{"url":"https://img.example/cat.jpg","detail":"high"}},
			{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]}]}`,
			[]string{"https://img.example/cat.jpg"}},
		{"responses input_image and input_file", `{"input":[{"role":"user","content":[
			{"type":"input_image","image_url":" https://img.example/x.png "},
			{"type":"input_file","file_url":"https://f.example/r.pdf"},
			{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]}`,
			[]string{"https://img.example/x.png", "https://f.example/r.pdf"}},
		{"url field whole", `{"messages":[{"content":[{"type":"image","source":{"type":"url","url":"https://good.example)@evil.example/"}}]}]}`,
			[]string{"https://good.example)@evil.example/"}},
		{"url field not a url", `{"messages":[{"url":"see https://a.example."}]}`, []string{"https://a.example"}},
		{"system string and blocks", `{"system":"Docs: https://a.example.","messages":[]}`, []string{"https://a.example"}},
		{"system blocks", `{"system":[{"type":"text","text":"https://b.example"}]}`, []string{"https://b.example"}},
		{"instructions", `{"instructions":"Read HTTPS://c.example/x;"}`, []string{"HTTPS://c.example/x"}},
		{"mcp servers", `{"mcp_servers":[{"type":"url","url":"https://mcp.example/sse","name":"m"}],"tools":[{"type":"mcp","server_label":"w","server_url":"https://w.example/mcp"}]}`,
			[]string{"https://mcp.example/sse", "https://w.example/mcp"}},
		{"tool description and enum", `{"tools":[{"name":"f","description":"Calls https://api.example/v1.","input_schema":{"$schema":"http://json-schema.org/draft-07/schema#",
			"$id":"https://schemas.example/f","properties":{"u":{"enum":["https://e.example"]}}}}]}`,
			[]string{"https://api.example/v1", "https://e.example"}},
		{"keys", `{"tools":[{"input_schema":{"properties":{"https://k.example":{}}}}]}`, []string{"https://k.example"}},
		{"tool arguments string", `{"input":[{"type":"function_call","name":"fetch","arguments":"{\"url\":\"https:\/\/x.example\/a\"}"}]}`,
			[]string{"https://x.example/a"}},
		{"prompt variables", `{"prompt":{"id":"pmpt_1","variables":{"doc":{"type":"input_file","file_url":"https://v.example/d.pdf"}}}}`,
			[]string{"https://v.example/d.pdf"}},
		{"outside scope", `{"model":"https://m.example","metadata":{"u":"https://meta.example"},"user":"https://u.example"}`, nil},
		{"case-folded scope", `{"Messages":[{"content":"https://a.example"}],"INPUT":"https://b.example"}`, []string{"https://a.example", "https://b.example"}},
		{"duplicate scope", `{"messages":[{"content":"https://a.example"}],"model":"x","messages":[{"content":"https://b.example"}]}`,
			[]string{"https://a.example", "https://b.example"}},
		{"numbers and literals", `{"messages":[1,true,null,-2.5e3,{"a":false,"b":"https://a.example"}],"system":7}`, []string{"https://a.example"}},
		{"pretty printed", "{\n  \"messages\" : [\n    { \"content\" : \"https://a.example\" ,\n \"url\" :\n \"https://b.example\" }\n  ]\n}\n",
			[]string{"https://a.example", "https://b.example"}},
		{"invalid: unterminated", `{"messages":[{"content":"https://a.example`, nil},
		{"invalid: garbage", `{"messages":[}{]]"https://a.example"`, nil},
		{"not an object", `["https://a.example"]`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := urls(c.body); !slices.Equal(got, c.want) {
				t.Errorf("URLs = %q, want %q", got, c.want)
			}
		})
	}
}

func TestURLsFixtures(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string
	}{
		{"claude_code.json", []string{
			"https://github.com/sluice-gateway/sluice/actions/runs/1234567890",
			"https://pkg.go.dev/unicode/utf8#RuneStart",
			"https://docs.claude.com/en/docs/claude-code/overview",
		}},
		{"codex_responses.json", []string{
			"https://github.com/sluice-gateway/sluice/issues/42",
			"https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation",
		}},
	} {
		body := fixture(t, c.file)
		got := collect(func(fn func(string) bool) { URLs(body, fn) })
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: URLs = %q\nwant %q", c.file, got, c.want)
		}
		if want := referenceURLs(t, body); !slices.Equal(got, want) {
			t.Errorf("%s: URLs = %q\nreference %q", c.file, got, want)
		}
	}
}

// referenceURLs is URLs done the slow way: the body's tokens from encoding/json, every
// string decoded by it, scanned with the same text rules.
func referenceURLs(t testing.TB, body []byte) []string {
	var got []string
	sc := urlScanner{fn: func(u string) bool { got = append(got, u); return true }}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		key    bool // the next token of this object is a key
	}
	var stack []frame
	inScope, valueKind := false, kindText
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("reference: %v", err)
		}
		isKey := len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].key
		kind := kindText
		if len(stack) > 0 && stack[len(stack)-1].object && !isKey {
			kind = valueKind
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = !isKey
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack = append(stack, frame{object: true, key: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
		case string:
			if isKey && len(stack) == 1 {
				inScope = slices.ContainsFunc(urlScope[:], func(s string) bool { return strings.EqualFold(s, tok) })
				continue
			}
			if isKey {
				valueKind = kindOf(tok)
				kind = kindText
			}
			if inScope {
				sc.scan(tok, true, kind)
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].object && !isKey {
			valueKind = kindText
		}
	}
}
