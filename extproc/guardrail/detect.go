package guardrail

import (
	"cmp"
	"fmt"
	"math/bits"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/internal/config"
)

// detector is a compiled built-in guardrail (regex, pii or secrets): a list of scanners
// whose matches are redacted or blocked on. It is immutable after New. The detectors of
// one check or stream scan together (see detectors).
type detector struct {
	scanners []scanner
	block    bool // action block; otherwise redact
	stats    bool // some scanner reads textStats
}

// scanner finds one entity (or one named pattern) in text.
type scanner struct {
	placeholder string // [REDACTED:NAME]
	reason      string // the client-safe block reason
	// find appends every match in s to ms, each tagged with sc (this scanner's number in
	// the scan, see detectors). Matches may overlap; redactions merges them.
	find func(s string, st textStats, sc int, ms []match) []match
}

// match is s[start:end], found by the scanner that sc numbers (see detectors.scanner).
type match struct {
	start, end int
	sc         int
}

// textStats are facts about a text that the number scanners use as prefilters, computed
// once per text in one pass over its digits. Each is an upper bound of what a scanner
// needs, so a scanner that they rule out could not have matched.
type textStats struct {
	digits int // ASCII digits
	// numRun is the most digits in one number: digit groups joined by one to three of
	// " -.()" (every phone, card and SSN format is one).
	numRun int
	dots   bool // some number has three '.' joins (it may hold an IPv4 address)
	iban   bool // some digits follow two capital letters
}

func statsOf(s string) textStats {
	st := textStats{digits: countDigits(s)}
	if st.digits < 4 {
		return st
	}
	for i := nextDigit(s, 0); i < len(s); {
		st.iban = st.iban || i >= 2 && is(s[i-2], cUpper) && is(s[i-1], cUpper)
		n, dots, j := 0, 0, i
		for {
			k := skipDigits(s, j)
			n, j = n+k-j, k
			e := j
			for e < len(s) && e-j < 3 && (s[e] == ' ' || s[e] == '-' || s[e] == '.' || s[e] == '(' || s[e] == ')') {
				e++
			}
			if e == j || e == len(s) || !isDigit(s[e]) {
				break
			}
			if e-j == 1 && s[j] == '.' {
				dots++
			}
			j = e
		}
		st.numRun = max(st.numRun, n)
		st.dots = st.dots || dots >= 3
		i = nextDigit(s, j)
	}
	return st
}

// detectors are the detector guardrails that one [Check] or [Stream] runs together: the
// guardrails of gs that are detectors and inspect d, in gs order. Their scanners run over
// a text in one scan; a match's sc numbers them in that order from 0 (see scanner).
type detectors struct {
	gs []*Guardrail
	d  config.GuardrailDirection
}

// scan returns the matches in s of every scanner of ds, appended to ms[:0] and sorted by
// start, longest first, then in scanner order. Matches may overlap. It allocates only
// when something matches.
func (ds detectors) scan(s string, ms []match) []match {
	ms = ms[:0]
	var st textStats
	stats, base := false, 0
	for _, g := range ds.gs {
		if g.det == nil || !g.Has(ds.d) {
			continue
		}
		if g.det.stats && !stats {
			st, stats = statsOf(s), true
		}
		for i := range g.det.scanners {
			ms = g.det.scanners[i].find(s, st, base+i, ms)
		}
		base += len(g.det.scanners)
	}
	if len(ms) > 1 {
		slices.SortFunc(ms, func(a, b match) int {
			if c := cmp.Compare(a.start, b.start); c != 0 {
				return c
			}
			if c := cmp.Compare(b.end, a.end); c != 0 {
				return c
			}
			return cmp.Compare(a.sc, b.sc)
		})
	}
	return ms
}

// scanner returns the index in ds.gs of the guardrail whose scanner sc numbers, and the
// scanner.
func (ds detectors) scanner(sc int) (int, *scanner) {
	for i, g := range ds.gs {
		if g.det == nil || !g.Has(ds.d) {
			continue
		}
		if sc < len(g.det.scanners) {
			return i, &g.det.scanners[sc]
		}
		sc -= len(g.det.scanners)
	}
	panic("guardrail: no scanner " + strconv.Itoa(sc))
}

// blocks reports whether the scanner sc numbers belongs to a blocking guardrail, and
// returns that guardrail's index in ds.gs.
func (ds detectors) blocks(sc int) (int, bool) {
	i, _ := ds.scanner(sc)
	return i, ds.gs[i].det.block
}

// redactions turns the sorted matches ms of a scan into the spans to redact, in place,
// and returns them: the matches of redacting guardrails (a blocking guardrail's match
// blocks instead), each group of overlapping ones merged into one span that keeps the
// scanner, and so the placeholder, of its first member: the leftmost, then the longest,
// then the first in guardrail and pattern order. The spans are sorted and disjoint.
func (ds detectors) redactions(ms []match) []match {
	out := ms[:0]
	for _, m := range ms {
		if _, block := ds.blocks(m.sc); block {
			continue
		}
		if k := len(out); k > 0 && m.start < out[k-1].end {
			out[k-1].end = max(out[k-1].end, m.end)
			continue
		}
		out = append(out, m)
	}
	return out
}

// redact replaces each of the spans rs (from redactions) of s with its placeholder.
func (ds detectors) redact(s string, rs []match) string {
	if len(rs) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16*len(rs))
	pos := 0
	for _, m := range rs {
		_, sc := ds.scanner(m.sc)
		b.WriteString(s[pos:m.start])
		b.WriteString(sc.placeholder)
		pos = m.end
	}
	b.WriteString(s[pos:])
	return b.String()
}

func newScanner(guardrailID, name string, find func(string, textStats, int, []match) []match) scanner {
	article := "a"
	if name != "" && strings.ContainsRune("aeioAEIO", rune(name[0])) {
		article = "an"
	}
	return scanner{
		placeholder: "[REDACTED:" + strings.ToUpper(name) + "]",
		reason:      fmt.Sprintf("guardrail %q found %s %s", guardrailID, article, name),
		find:        find,
	}
}

// compileRegex builds the regex kind's detector. Patterns were checked by Validate.
func compileRegex(g *config.Guardrail) (*detector, error) {
	d := &detector{block: g.Action != config.ActionRedact}
	for _, p := range g.Patterns {
		re, err := regexp.Compile(p.Pattern)
		if err != nil {
			return nil, fmt.Errorf("guardrail %s: pattern %s: %w", g.ID, p.Name, err)
		}
		d.scanners = append(d.scanners, newScanner(g.ID, p.Name, regexFinder(re)))
	}
	return d, nil
}

func regexFinder(re *regexp.Regexp) func(string, textStats, int, []match) []match {
	// A pattern that starts with a literal cannot match a text without it, and
	// strings.Contains is far cheaper than running the automaton.
	prefix, _ := re.LiteralPrefix()
	return func(s string, _ textStats, sc int, ms []match) []match {
		if prefix != "" && !strings.Contains(s, prefix) {
			return ms
		}
		for _, loc := range re.FindAllStringIndex(s, -1) {
			if loc[1] > loc[0] { // an empty match has nothing to redact
				ms = append(ms, match{loc[0], loc[1], sc})
			}
		}
		return ms
	}
}

// entityFinders maps each pii and secrets entity to its scanner; usesStats marks the
// ones that read textStats.
var (
	entityFinders = map[string]func(string, textStats, int, []match) []match{
		"email":          findEmails,
		"phone":          findPhones,
		"credit_card":    findCards,
		"iban":           findIBANs,
		"us_ssn":         findSSNs,
		"ip_address":     findIPs,
		"openai_key":     findOpenAIKeys,
		"anthropic_key":  findAnthropicKeys,
		"aws_access_key": findAWSKeys,
		"github_token":   findGitHubTokens,
		"google_api_key": findGoogleKeys,
		"slack_token":    findSlackTokens,
		"private_key":    findPrivateKeys,
		"jwt":            findJWTs,
		"sluice_key":     findSluiceKeys,
	}
	usesStats = map[string]bool{"phone": true, "credit_card": true, "iban": true, "us_ssn": true, "ip_address": true}
)

// compileEntities builds a pii or secrets detector.
func compileEntities(g *config.Guardrail) (*detector, error) {
	names := g.Entities
	if len(names) == 0 {
		names = config.PIIEntities
		if g.Kind == config.GuardrailSecrets {
			names = config.SecretEntities
		}
	}
	d := &detector{block: g.Action != config.ActionRedact}
	for _, name := range names {
		f := entityFinders[name]
		if f == nil {
			return nil, fmt.Errorf("guardrail %s: no detector for entity %q", g.ID, name)
		}
		d.scanners = append(d.scanners, newScanner(g.ID, name, f))
		d.stats = d.stats || usesStats[name]
	}
	return d, nil
}

// Byte classes.
const (
	cDigit  = 1 << iota // 0-9
	cUpper              // A-Z
	cLower              // a-z
	cHex                // 0-9 A-F a-f
	cLocal              // an email local part: alnum and ._%+-
	cDomain             // an email domain: alnum and .-
	cKey                // a token body: alnum and _-
	cWord               // alnum and _
	cDashed             // alnum and -
	cHold               // a byte a held-back word may contain (see Stream)

	cAlnum = cDigit | cUpper | cLower
)

var class = func() (t [256]uint16) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cHex
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper
		t[c+'a'-'A'] |= cLower
	}
	for c := 'A'; c <= 'F'; c++ {
		t[c] |= cHex
		t[c+'a'-'A'] |= cHex
	}
	for c := range 256 {
		if t[c]&cAlnum != 0 {
			t[c] |= cLocal | cDomain | cKey | cWord | cDashed | cHold
		}
	}
	for _, c := range "._%+-" {
		t[c] |= cLocal
	}
	for _, c := range ".-" {
		t[c] |= cDomain
	}
	for _, c := range "_-" {
		t[c] |= cKey
	}
	t['_'] |= cWord
	t['-'] |= cDashed
	for _, c := range "._%+-@=/:~" {
		t[c] |= cHold
	}
	return t
}()

func is(c byte, cl uint16) bool { return class[c]&cl != 0 }

func isDigit(c byte) bool { return c-'0' < 10 }

// isNumJoin reports whether c joins two digit runs into one number ("1.5", "1,000",
// "2024-01-02", "12:30", "1/2").
func isNumJoin(c byte) bool { return c == '.' || c == ',' || c == '-' || c == '/' || c == ':' }

// numStart reports whether a number may start at s[i]: it does not continue a word or
// another number.
func numStart(s string, i int) bool {
	if i == 0 {
		return true
	}
	c := s[i-1]
	return !is(c, cAlnum) && c != '_' && !(isNumJoin(c) && i >= 2 && isDigit(s[i-2]))
}

// numEnd reports whether a number may end at s[j].
func numEnd(s string, j int) bool {
	if j >= len(s) {
		return true
	}
	c := s[j]
	return !is(c, cAlnum) && c != '_' && !(isNumJoin(c) && j+1 < len(s) && isDigit(s[j+1]))
}

// tokenStart reports whether a token (a key, a JWT) may start at s[i].
func tokenStart(s string, i int) bool {
	return i == 0 || !is(s[i-1], cKey) && s[i-1] != '.'
}

// SWAR helpers: eight bytes at a time, ASCII digits only (bytes ≥ 0x80 never count).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// digitMask sets the high bit of each byte of x that is an ASCII digit.
func digitMask(x uint64) uint64 {
	lo := x &^ highs               // no carry can cross a byte below
	ge0 := lo + (0x80-'0')*ones    // high bit: byte ≥ '0'
	gt9 := lo + (0x80-'9'-1)*ones  // high bit: byte > '9'
	return ge0 &^ gt9 &^ x & highs // and the byte was ASCII
}

func countDigits(s string) int {
	n, i := 0, 0
	for ; i+8 <= len(s); i += 8 {
		n += bits.OnesCount64(digitMask(load64(s[i:])))
	}
	for ; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// nextDigit returns the index of the first digit in s at or after i, or len(s).
func nextDigit(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if m := digitMask(load64(s[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if isDigit(s[i]) {
			return i
		}
	}
	return len(s)
}

// skipDigits returns the end of the digit run starting at i.
func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
