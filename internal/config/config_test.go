package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var (
	dpHashA = strings.Repeat("a", 64)
	dpHashB = strings.Repeat("b", 64)
)

func validDataPlaneConfig() *Config {
	return &Config{
		Version: Version,
		Providers: []Provider{
			{ID: "oa", Type: ProviderOpenAI, APIKeyEnv: "OPENAI_API_KEY", Models: []string{"gpt-4o"}},
			{ID: "an", Type: ProviderAnthropic, BaseURL: "https://anthropic.internal:8443/prefix"},
			{ID: "local", Type: ProviderOpenAICompatible, BaseURL: "http://127.0.0.1:11434"},
		},
		Keys: []Key{
			{ID: "vk_one", Hash: dpHashA, Providers: []string{"oa", "an"},
				ModelAliases: map[string]Alias{"fast": {Model: "gpt-4o-mini"}}},
			{ID: "vk_two", Hash: dpHashB},
		},
	}
}

func TestValidateAcceptsValid(t *testing.T) {
	if err := validDataPlaneConfig().Validate(); err != nil {
		t.Errorf("Validate(valid) = %v, want nil", err)
	}
	if err := (&Config{Version: Version}).Validate(); err != nil {
		t.Errorf("Validate(empty) = %v, want nil", err)
	}
}

func TestValidateSingleProblems(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"version", func(c *Config) { c.Version = 2 }, "version 2"},
		{"missing version", func(c *Config) { c.Version = 0 }, "version 0"},
		{"provider id", func(c *Config) { c.Providers[0].ID = "" }, "providers[0]: id is required"},
		{"duplicate provider", func(c *Config) { c.Providers[1].ID = "oa"; c.Keys[0].Providers = nil }, `providers[1]: duplicate id "oa"`},
		{"unknown type", func(c *Config) { c.Providers[0].Type = "bedrock" }, `unknown type "bedrock"`},
		{"compatible without base_url", func(c *Config) { c.Providers[2].BaseURL = "" }, "base_url is required"},
		{"base_url scheme", func(c *Config) { c.Providers[1].BaseURL = "ftp://x" }, "base_url must be an http(s) URL"},
		{"base_url no host", func(c *Config) { c.Providers[1].BaseURL = "https://" }, "base_url must be an http(s) URL"},
		{"base_url relative", func(c *Config) { c.Providers[1].BaseURL = "api.anthropic.com" }, "base_url must be an http(s) URL"},
		{"key id prefix", func(c *Config) { c.Keys[0].ID = "key1" }, "keys[0]: id must start with vk_"},
		{"duplicate key id", func(c *Config) { c.Keys[1].ID = "vk_one" }, `keys[1]: duplicate id "vk_one"`},
		{"bad hash", func(c *Config) { c.Keys[0].Hash = "xyz" }, `key "vk_one": hash`},
		{"duplicate hash", func(c *Config) { c.Keys[1].Hash = dpHashA }, `key "vk_two": duplicate hash`},
		{"unknown provider", func(c *Config) { c.Keys[0].Providers = []string{"oa", "nope"} }, `unknown provider "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validDataPlaneConfig()
			tt.mod(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := &Config{
		Version: 7,
		Providers: []Provider{
			{ID: "", Type: ProviderOpenAI},
			{ID: "p", Type: "bedrock"},
			{ID: "p", Type: ProviderOpenAICompatible},
			{ID: "q", Type: ProviderAnthropic, BaseURL: "gopher://x"},
		},
		Keys: []Key{
			{ID: "bad", Hash: dpHashA},
			{ID: "vk_1", Hash: "short"},
			{ID: "vk_1", Hash: dpHashA, Providers: []string{"ghost"}},
		},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() returned %T, want an errors.Join result", err)
	}
	want := []string{
		"version 7",
		"providers[0]: id is required",
		`unknown type "bedrock"`,
		`providers[2]: duplicate id "p"`,
		`provider "p": base_url is required`,
		`provider "q": base_url must be an http(s) URL`,
		"keys[0]: id must start with vk_",
		`key "vk_1": hash`,
		`keys[2]: duplicate id "vk_1"`,
		`key "vk_1": duplicate hash`,
		`unknown provider "ghost"`,
	}
	if got := len(joined.Unwrap()); got != len(want) {
		t.Errorf("Validate() joined %d errors, want %d:\n%v", got, len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() does not report %q:\n%v", w, err)
		}
	}
}

func TestAliasJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Alias
	}{
		{"string", `"gpt-4o-mini"`, Alias{Model: "gpt-4o-mini"}},
		{"object", `{"an":"claude-haiku","oa":"gpt-4o-mini"}`, Alias{ByProvider: map[string]string{"oa": "gpt-4o-mini", "an": "claude-haiku"}}},
		{"empty object", `{}`, Alias{ByProvider: map[string]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Alias
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Unmarshal(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(out) != tt.in {
				t.Errorf("Marshal = %s, want %s", out, tt.in)
			}
		})
	}
	for _, bad := range []string{`42`, `["a"]`, `{"oa":1}`, `true`} {
		var a Alias
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("Unmarshal(%s) = %+v, nil; want error", bad, a)
		}
	}
}

func TestAliasInKeyRoundTrip(t *testing.T) {
	in := `{"id":"vk_1","hash":"` + dpHashA + `","model_aliases":{"fast":"gpt-4o-mini","smart":{"an":"claude-opus","oa":"gpt-4o"}}}`
	var k Key
	if err := json.Unmarshal([]byte(in), &k); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Errorf("round trip:\n got %s\nwant %s", out, in)
	}
}

func TestAliasFor(t *testing.T) {
	one := Alias{Model: "m"}
	per := Alias{ByProvider: map[string]string{"oa": "gpt", "an": ""}}
	tests := []struct {
		name     string
		a        Alias
		provider string
		want     string
		wantOK   bool
	}{
		{"single covers any provider", one, "whatever", "m", true},
		{"empty single covers none", Alias{}, "oa", "", false},
		{"per-provider hit", per, "oa", "gpt", true},
		{"per-provider miss", per, "local", "", false},
		{"per-provider empty entry", per, "an", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.a.For(tt.provider)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("For(%q) = %q, %v; want %q, %v", tt.provider, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func writeConfigFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	b, err := json.Marshal(validDataPlaneConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(writeConfigFile(t, string(b)))
	if err != nil {
		t.Fatalf("Load(valid) = %v", err)
	}
	if !reflect.DeepEqual(got, validDataPlaneConfig()) {
		t.Errorf("Load:\n got %+v\nwant %+v", got, validDataPlaneConfig())
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"unknown top-level field", `{"version":1,"providerz":[]}`, "providerz"},
		{"unknown provider field", `{"version":1,"providers":[{"id":"oa","type":"openai","api_key":"sk-live"}]}`, "api_key"},
		{"unknown key field", `{"version":1,"keys":[{"id":"vk_1","hash":"` + dpHashA + `","secret":"x"}]}`, "secret"},
		{"syntax", `{"version":1,`, "config"},
		{"invalid", `{"version":3}`, "version 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfigFile(t, tt.content)
			c, err := Load(p)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want error", c)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("Load error %q, want it to name %q and the path", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestDefaultBaseURL(t *testing.T) {
	tests := []struct {
		t    ProviderType
		want string
	}{
		{ProviderOpenAI, "https://api.openai.com"},
		{ProviderAnthropic, "https://api.anthropic.com"},
	}
	for _, tt := range tests {
		if got := DefaultBaseURL(tt.t); got != tt.want {
			t.Errorf("DefaultBaseURL(%q) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestLoadFileRejectsTrailingData(t *testing.T) {
	// A botched merge that leaves two documents in one file must not load the first silently.
	_, err := Load(writeConfigFile(t, `{"version":1} {"version":1,"keys":[{"id":"vk_x"}]}`))
	if err == nil {
		t.Fatal("Load ignores data after the first JSON value (json.Decoder reads one value; check dec.More or use json.Unmarshal)")
	}
}
