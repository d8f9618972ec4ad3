package mainlib

import (
	"bytes"
	"testing"
)

func TestYAMLScalars(t *testing.T) {
	for in, want := range map[string]string{
		"sluice_extproc":       "sluice_extproc",
		"/v1/":                 "/v1/",
		"15s":                  "15s",
		"0s":                   "0s",
		"":                     `""`,
		"true":                 `"true"`,
		"No":                   `"No"`,
		"null":                 `"null"`,
		"9004":                 `"9004"`,
		"1e3":                  `"1e3"`,
		"127.0.0.1":            `"127.0.0.1"`,
		"outbound|9004||a.svc": `"outbound|9004||a.svc"`,
		"%REQ(x)%":             `"%REQ(x)%"`,
		"a: b":                 `"a: b"`,
		"#x":                   `"#x"`,
		"*":                    `"*"`,
		"-x":                   `"-x"`,
		"two\nlines \"q\"":     `"two\nlines \"q\""`,
		"<tag>&":               `"<tag>&"`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"name": "name", "@type": `"@type"`, "on": `"on"`, "sluice.ext_proc": "sluice.ext_proc"} {
		if got := yamlKey(in); got != want {
			t.Errorf("yamlKey(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestYAMLBlocks(t *testing.T) {
	var b bytes.Buffer
	err := writeYAMLDoc(&b, "head", []yamlSection{{comment: "one\ntwo", key: "k", value: omap{
		{"list", []any{omap{{"a", 1}, {"b", omap{{"c", true}}}}, "s", []any{}, omap{}}},
		{"empty", omap{}},
		{"nested", []any{[]any{1, 2}}},
		{"none", nil},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `# head

# one
# two
k:
  list:
  - a: 1
    b:
      c: true
  - s
  - []
  - {}
  empty: {}
  nested:
  - - 1
    - 2
  none: null
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
