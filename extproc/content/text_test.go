package content

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// TestRequestTextSeesBypasses: text a shape-aware walk would miss but a provider or a
// translating decoder would read is still inspected; payloads that are not text are not.
func TestRequestTextSeesBypasses(t *testing.T) {
	for name, body := range map[string]string{
		"case-variant messages":   `{"model":"m","messages":[{"role":"user","content":"hi"}],"Messages":[{"role":"user","content":"SECRET"}]}`,
		"case-variant content":    `{"model":"m","messages":[{"role":"user","Content":"SECRET"}]}`,
		"text on an image part":   `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","text":"SECRET"}]}]}`,
		"case-variant system":     `{"model":"m","max_tokens":5,"System":"SECRET","messages":[]}`,
		"anthropic text doc":      `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"SECRET"}}]}]}`,
		"anthropic search result": `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"search_result","title":"t","source":"s","content":[{"type":"text","text":"SECRET"}]}]}]}`,
	} {
		found := false
		for _, f := range RequestText([]byte(body)) {
			found = found || strings.Contains(f.Text, "SECRET")
		}
		if !found {
			t.Errorf("%s: the secret text was not listed", name)
		}
	}
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,QUJD"}},` +
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"QUJD"}}]}]}`
	for _, f := range RequestText([]byte(body)) {
		if strings.Contains(f.Text, "QUJD") || f.Text == "gpt-4o" || f.Text == "user" {
			t.Errorf("listed a non-text value %q", f.Text)
		}
	}
}

// TestRequestTextPaths: every listed field's path leads gjson and sjson to its text.
func TestRequestTextPaths(t *testing.T) {
	for _, body := range []string{chatRequest, anthropicRequest, responsesRequest} {
		fields := RequestText([]byte(body))
		if len(fields) < 5 {
			t.Fatalf("only %d fields in %.60q", len(fields), body)
		}
		for _, f := range fields {
			if f.Path == "" {
				continue
			}
			if got := gjson.Get(body, f.Path); got.Str != f.Text {
				t.Errorf("gjson at %q = %q, want %q", f.Path, got.Str, f.Text)
			}
			set, err := sjson.Set(body, f.Path, "NEW")
			if err != nil || strings.Count(set, `"NEW"`) != 1 {
				t.Errorf("sjson at %q: %v", f.Path, err)
			}
		}
	}
}
