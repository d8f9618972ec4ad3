package pricing

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/internal/money"
)

//go:embed prices.json
var bundledJSON []byte

var bundled = sync.OnceValue(func() *Table {
	t, err := ParseTable(bundledJSON)
	if err != nil {
		// prices.json is compiled in and checked by the package's tests.
		panic("pricing: bundled prices.json: " + err.Error())
	}
	return t
})

// Bundled returns the price table compiled into the binary (prices.json), parsed on first
// use. The table is shared and read-only.
func Bundled() *Table { return bundled() }

// section is one price list of a table: the list of one vendor's models.
type section int

const (
	sectionOpenAI section = iota
	sectionAzure
	sectionAnthropic
	sectionGemini
	sectionVertex
	sectionBedrock
	numSections
)

var sectionNames = [numSections]string{"openai", "azure", "anthropic", "gemini", "vertex", "bedrock"}

// Sections a provider type's models are looked up in, in order; see [Table.Lookup]. Package
// variables, so that a lookup does not allocate.
var (
	openAISections    = []section{sectionOpenAI}
	azureSections     = []section{sectionAzure, sectionOpenAI}
	anthropicSections = []section{sectionAnthropic}
	geminiSections    = []section{sectionGemini}
	vertexSections    = []section{sectionVertex, sectionAnthropic, sectionGemini}
	bedrockSections   = []section{sectionBedrock, sectionAnthropic}
)

func sectionsFor(pt string) []section {
	switch pt {
	case "openai", "openai-compatible":
		return openAISections
	case "azure":
		return azureSections
	case "anthropic":
		return anthropicSections
	case "gemini":
		return geminiSections
	case "vertex":
		return vertexSections
	case "bedrock":
		return bedrockSections
	}
	return nil
}

// Table maps model names to prices, per vendor section. It is immutable once parsed and safe
// for concurrent use.
type Table struct {
	// Version is the date (YYYY-MM-DD) the table's prices were checked against their sources.
	Version string
	models  [numSections]map[string]Price
	sources [numSections]string
}

// Source returns where a section's prices come from, e.g. "anthropic" → the vendor's
// pricing page and the date it was read; "" for an unknown or absent section.
func (t *Table) Source(sectionName string) string {
	if i := slices.Index(sectionNames[:], sectionName); i >= 0 {
		return t.sources[i]
	}
	return ""
}

// The document ParseTable reads.
type tableDoc struct {
	Version  string                 `json:"version"`
	Note     string                 `json:"note"`
	Sections map[string]*sectionDoc `json:"sections"`
}

type sectionDoc struct {
	Source string              `json:"source"`
	Models map[string]priceDoc `json:"models"`
}

// priceDoc is a Price whose input and output must be written out, so that a forgotten rate
// is an error rather than a free model.
type priceDoc struct {
	Input        *money.NanoUSD `json:"input"`
	Output       *money.NanoUSD `json:"output"`
	CacheRead    money.NanoUSD  `json:"cache_read"`
	CacheWrite5m money.NanoUSD  `json:"cache_write_5m"`
	CacheWrite1h money.NanoUSD  `json:"cache_write_1h"`
	Reasoning    money.NanoUSD  `json:"reasoning"`
}

// ParseTable parses a price table strictly: unknown fields or sections, duplicate keys
// anywhere, a version that is not a YYYY-MM-DD date, a model name that is not lowercase or
// holds '*', '/' or white space, a price without input or output, and an invalid price are
// all errors. Past JSON syntax and schema errors, every problem is reported at once.
func ParseTable(b []byte) (*Table, error) {
	if err := checkDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc tableDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("price table: trailing data after the JSON object")
	}

	var errs []error
	if _, err := time.Parse(time.DateOnly, doc.Version); err != nil {
		errs = append(errs, fmt.Errorf("version %q: want a date such as 2026-11-23", doc.Version))
	}
	t := &Table{Version: doc.Version}
	for _, name := range sortedKeys(doc.Sections) {
		i := slices.Index(sectionNames[:], name)
		if i < 0 {
			errs = append(errs, fmt.Errorf("unknown section %q (want one of %s)", name, strings.Join(sectionNames[:], ", ")))
			continue
		}
		sd := doc.Sections[name]
		if sd == nil {
			errs = append(errs, fmt.Errorf("section %s: null", name))
			continue
		}
		t.sources[i] = sd.Source
		t.models[i] = make(map[string]Price, len(sd.Models))
		for _, model := range sortedKeys(sd.Models) {
			p, err := sd.Models[model].price()
			if err == nil {
				err = validModelName(model)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("section %s: model %q: %w", name, model, err))
				continue
			}
			t.models[i][model] = p
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	return t, nil
}

func (d priceDoc) price() (Price, error) {
	var errs []error
	if d.Input == nil {
		errs = append(errs, errors.New("input is required (write 0 for a free model)"))
	}
	if d.Output == nil {
		errs = append(errs, errors.New("output is required (write 0 for a free model)"))
	}
	if len(errs) > 0 {
		return Price{}, errors.Join(errs...)
	}
	p := Price{Input: *d.Input, Output: *d.Output, CacheRead: d.CacheRead,
		CacheWrite5m: d.CacheWrite5m, CacheWrite1h: d.CacheWrite1h, Reasoning: d.Reasoning}
	return p, p.Validate()
}

func validModelName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if name != strings.ToLower(name) {
		return errors.New("name must be lowercase")
	}
	if strings.ContainsAny(name, "*/ \t\r\n") {
		return errors.New("name must not contain '*', '/' or white space")
	}
	return nil
}

// checkDuplicateKeys reports the first object key that appears twice in one JSON object of
// b; encoding/json would silently keep the last. Syntax errors are left to the decoder.
func checkDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil
				}
				k, _ := kt.(string)
				if seen[k] {
					return fmt.Errorf("%s: duplicate key %q", path, k)
				}
				seen[k] = true
				if err := walk(path + "." + k); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		}
		return nil
	}
	return walk("$")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Lookup finds the price of model as served by a provider of type pt. It does not allocate
// when model is already lowercase ASCII.
//
// Sections searched, in order; the first holding a match wins:
//   - openai, openai-compatible: openai. An openai-compatible endpoint serving a model
//     under an OpenAI name is priced as OpenAI; anything else needs an override.
//   - azure: azure, then openai. Azure's global deployments are list-priced as OpenAI's, so
//     the bundled azure section is empty; Data Zone and regional deployments cost more and
//     need an azure entry or an override.
//   - anthropic: anthropic. gemini: gemini.
//   - vertex: vertex, then anthropic (claude-*), then gemini (gemini-*); the two vendors'
//     names do not overlap. The premium of Vertex regional endpoints is not modelled.
//   - bedrock: bedrock (Amazon Nova, anything Bedrock-specific), then anthropic. The
//     premium of Bedrock regional profiles over global ones is not modelled.
//
// Matching (steps 3 and 4 run in each section in turn):
//
//  1. The name is lowercased, and anything up to its last '/' dropped ("models/gemini-2.5-pro",
//     a Bedrock ARN ending ".../us.anthropic.claude-…").
//  2. Bedrock only: a cross-region profile prefix (us., eu., apac., global., …) and then a
//     vendor prefix (anthropic., amazon., meta., …) are dropped:
//     "us.anthropic.claude-sonnet-4-5-20250929-v1:0" → "claude-sonnet-4-5-20250929-v1:0".
//  3. An entry named exactly so wins.
//  4. Otherwise the longest entry E such that the name is E, a separator ('-', '@', ':' or
//     '.'), then a snapshot tag, then anything. A snapshot tag is a run of three or more
//     digits (a date such as 20250929 or 2024-08-06, a revision such as 001), 'v' and a
//     digit (Bedrock's v1:0), or "latest", each ending at a separator or the end. So
//     "claude-sonnet-4-5-20250929-v1:0" → claude-sonnet-4-5, "gpt-4o-mini-2024-07-18" →
//     gpt-4o-mini, "claude-3-5-haiku@20241022" → claude-3-5-haiku; but a variant or a new
//     version never borrows another model's price: "gpt-4o-mini" is not gpt-4o,
//     "o3-pro" is not o3, "gpt-5.3" is not gpt-5 and "claude-opus-4-6" is not
//     claude-opus-4.
func (t *Table) Lookup(pt, model string) (Price, bool) {
	name := strings.ToLower(model) // returns model itself when there is nothing to lower
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if pt == "bedrock" {
		name = stripBedrockPrefixes(name)
	}
	for _, s := range sectionsFor(pt) {
		if p, ok := matchModel(t.models[s], name); ok {
			return p, true
		}
	}
	return Price{}, false
}

func matchModel(models map[string]Price, name string) (Price, bool) {
	if len(models) == 0 || name == "" {
		return Price{}, false
	}
	if p, ok := models[name]; ok {
		return p, true
	}
	for i := len(name) - 1; i > 0; i-- {
		if isSeparator(name[i]) && isSnapshotTag(name[i+1:]) {
			if p, ok := models[name[:i]]; ok {
				return p, true
			}
		}
	}
	return Price{}, false
}

func isSeparator(c byte) bool { return c == '-' || c == '@' || c == ':' || c == '.' }

func isSnapshotTag(s string) bool {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	switch {
	case n >= 3:
	case n == 0 && len(s) >= 2 && s[0] == 'v' && s[1] >= '0' && s[1] <= '9':
		n = 2
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
	case n == 0 && strings.HasPrefix(s, "latest"):
		n = len("latest")
	default:
		return false
	}
	return n == len(s) || isSeparator(s[n])
}

// Bedrock cross-region inference profile prefixes and model vendor prefixes.
var (
	bedrockRegionPrefixes = []string{"us.", "us-gov.", "eu.", "apac.", "au.", "ca.", "jp.", "global."}
	bedrockVendorPrefixes = []string{"anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.",
		"deepseek.", "openai.", "qwen.", "writer.", "stability.", "twelvelabs."}
)

func stripBedrockPrefixes(name string) string {
	for _, p := range bedrockRegionPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok {
			name = rest
			break
		}
	}
	for _, p := range bedrockVendorPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok {
			return rest
		}
	}
	return name
}
