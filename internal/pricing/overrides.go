package pricing

import (
	"errors"
	"fmt"
	"strings"
)

// Overrides are one provider's own prices, keyed by model name or by a "prefix*" pattern
// ("*" alone matches every model, e.g. to price a self-hosted endpoint at zero). Keys match
// the model name given to [Resolve] as it is, case-insensitively: no prefix stripping and
// no snapshot-suffix matching, which is what patterns are for ("gpt-4o-2024-*").
//
// A Price decoded from JSON reads a missing input or output as zero, i.e. free;
// [Price.Validate] catches the common slip of setting cache rates without input.
type Overrides map[string]Price

// Validate reports every bad key or price: an empty key, white space, a '*' other than
// at the end, two keys equal but for case, an invalid price.
func (o Overrides) Validate() error {
	var errs []error
	seen := make(map[string]string, len(o))
	for _, k := range sortedKeys(o) {
		switch {
		case k == "":
			errs = append(errs, errors.New("override: empty model name"))
			continue
		case strings.ContainsAny(k, " \t\r\n"):
			errs = append(errs, fmt.Errorf("override %q: model name has white space", k))
		case strings.Contains(strings.TrimSuffix(k, "*"), "*"):
			errs = append(errs, fmt.Errorf("override %q: '*' may only end a pattern", k))
		}
		lower := strings.ToLower(k)
		if prev, ok := seen[lower]; ok {
			errs = append(errs, fmt.Errorf("override %q: same model as %q (names are case-insensitive)", k, prev))
		}
		seen[lower] = k
		if err := o[k].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("override %q: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// match finds model's override: an exact key first, then the pattern with the longest
// prefix. Ties, possible only in unvalidated Overrides, go to the smallest key so the
// answer does not depend on map order. It does not allocate.
func (o Overrides) match(model string) (Price, bool) {
	if len(o) == 0 {
		return Price{}, false
	}
	if p, ok := o[model]; ok && !strings.HasSuffix(model, "*") {
		return p, true
	}
	var exactKey, prefixKey string
	exact, prefix := false, false
	for k := range o {
		if pat, ok := strings.CutSuffix(k, "*"); ok {
			if len(model) < len(pat) || !strings.EqualFold(model[:len(pat)], pat) {
				continue
			}
			if !prefix || len(k) > len(prefixKey) || (len(k) == len(prefixKey) && k < prefixKey) {
				prefixKey, prefix = k, true
			}
		} else if strings.EqualFold(k, model) && (!exact || k < exactKey) {
			exactKey, exact = k, true
		}
	}
	switch {
	case exact:
		return o[exactKey], true
	case prefix:
		return o[prefixKey], true
	}
	return Price{}, false
}

// Resolve prices model served by a provider of type pt with overrides o: o's exact key,
// then o's longest matching pattern, then t's entry as [Table.Lookup] finds it. t or o may be
// nil. ok is false when nothing prices the model. It does not allocate when model is
// lowercase ASCII.
// pt is a provider type as config.ProviderType spells it ("openai", "bedrock", …).
func Resolve(t *Table, pt string, o Overrides, model string) (Price, bool) {
	if p, ok := o.match(model); ok {
		return p, true
	}
	if t == nil {
		return Price{}, false
	}
	return t.Lookup(pt, model)
}
