package guardrail

import (
	"net/netip"
	"strings"
)

// The PII scanners are hand-written rather than regular expressions: each is anchored on
// a byte that a match must contain ('@', a digit, '.', ':'), found with IndexByte or eight
// bytes at a time, so prose without those bytes costs one pass and no allocation. Each
// validates what it finds (Luhn, mod 97, octet ranges) because precision matters more
// than recall: a redacted order number or date breaks a conversation.

// findEmails finds local@domain.tld: a local part of letters, digits and ._%+- (not
// starting or ending with '.'), and two or more domain labels, the last alphabetic.
func findEmails(s string, _ textStats, sc int, ms []match) []match {
	for at := 0; at < len(s); {
		k := strings.IndexByte(s[at:], '@')
		if k < 0 {
			break
		}
		k += at
		at = k + 1
		i := k
		for i > 0 && is(s[i-1], cLocal) {
			i--
		}
		for i < k && s[i] == '.' {
			i++
		}
		if i == k || s[k-1] == '.' {
			continue
		}
		if end := domainEnd(s, k+1); end > 0 {
			ms = append(ms, match{i, end, sc})
			at = end
		}
	}
	return ms
}

// domainEnd returns the end of the longest domain at s[i:] that has two or more labels
// of letters, digits and inner hyphens, the last one of two or more letters; else -1.
func domainEnd(s string, i int) int {
	end := -1
	for labels := 1; ; labels++ {
		j, alpha := i, true
		for j < len(s) && (is(s[j], cAlnum) || s[j] == '-') {
			alpha = alpha && is(s[j], cUpper|cLower)
			j++
		}
		if j == i || j-i > 63 || s[i] == '-' || s[j-1] == '-' {
			return end
		}
		if labels >= 2 && alpha && j-i >= 2 {
			end = j
		}
		if j+1 >= len(s) || s[j] != '.' || !is(s[j+1], cAlnum) {
			return end
		}
		i = j + 1
	}
}

// groupFollows reports whether another group of digits may follow the one ending at j:
// one or two of " -.()" and then a digit.
func groupFollows(s string, j int) bool {
	for k := j; k < len(s) && k < j+3; k++ {
		switch c := s[k]; {
		case isDigit(c):
			return k > j
		case c != ' ' && c != '-' && c != '.' && c != '(' && c != ')':
			return false
		}
	}
	return false
}

// numGroup is one group of digits in a phone number candidate.
type numGroup struct {
	at, n int  // first digit, digit count
	paren bool // written "(415)"
	sep   byte // the separator before the group: ' ', '-', '.', or 0 for none
}

const maxPhoneGroups = 8

// findPhones finds international numbers ("+44 20 7946 0958", "+14155552671"), NANP
// numbers with separators ("(415) 555-2671", "415.555.2671", "1-415-555-2671") and
// European national numbers starting with 0 with one separator throughout ("020 7946
// 0958", "01 23 45 67 89"). A run of digit groups is judged whole: if it is not a phone
// number as a whole, no part of it is one, which keeps dates, card numbers and tables out.
func findPhones(s string, st textStats, sc int, ms []match) []match {
	if st.numRun < 8 {
		return ms
	}
	var buf [maxPhoneGroups]numGroup
	for i := nextDigit(s, 0); i < len(s); {
		if j := skipDigits(s, i); !groupFollows(s, j) && (i == 0 || s[i-1] != '+' && s[i-1] != '(') {
			i = nextDigit(s, j) // a lone number ("in 2024 we") is never a phone number
			continue
		}
		p := i
		if p > 0 && s[p-1] == '(' {
			p--
		}
		if p > 0 && s[p-1] == '+' {
			p--
		}
		end, gs, ok := phoneRun(s, p, buf[:0])
		if ok && numStart(s, p) && numEnd(s, end) && validPhone(s, p, gs) {
			ms = append(ms, match{p, end, sc})
		}
		i = nextDigit(s, max(end, skipDigits(s, i)))
	}
	return ms
}

// phoneRun reads the run of digit groups at s[p:] and returns its end, its groups, and
// whether it is small enough to be a phone number.
func phoneRun(s string, p int, gs []numGroup) (int, []numGroup, bool) {
	j, ok, digits := p, true, 0
	if s[j] == '+' {
		j++
	}
	var sep byte
	for {
		paren := j < len(s) && s[j] == '('
		if paren {
			j++
		}
		k := skipDigits(s, j)
		if k == j || paren && (k == len(s) || s[k] != ')') {
			return j, gs, false
		}
		if len(gs) > 0 && digits+k-j > 15 {
			// Too long for a phone number with this group: the group starts another
			// number ("+1 415 555 2671 4111111111111111"). Stop before its separator.
			if sep != 0 {
				j--
			}
			if paren {
				j--
			}
			break
		}
		if len(gs) == maxPhoneGroups {
			ok = false
		} else {
			gs = append(gs, numGroup{at: j, n: k - j, paren: paren, sep: sep})
		}
		digits += k - j
		j = k
		if paren {
			j++
		}
		if j >= len(s) {
			break
		}
		c := s[j]
		if (c == ' ' || c == '-' || c == '.') && j+1 < len(s) && (isDigit(s[j+1]) || s[j+1] == '(') {
			sep = c
			j++
			continue
		}
		if c == '(' || paren && isDigit(c) { // "+44(0)20", "(415)555-2671"
			sep = 0
			continue
		}
		break
	}
	return j, gs, ok
}

func validPhone(s string, p int, gs []numGroup) bool {
	digits := 0
	for _, g := range gs {
		digits += g.n
	}
	first := s[gs[0].at]
	if s[p] == '+' {
		// The country code comes first, then the national number: 8 to 15 digits (E.164).
		return digits >= 8 && digits <= 15 && first != '0' && !gs[0].paren && (len(gs) == 1 || gs[0].n <= 3)
	}
	if g := gs; len(g) >= 3 {
		if len(g) == 4 && g[0].n == 1 && first == '1' && !g[0].paren {
			g = g[1:] // "1-415-555-2671", "1 (415) 555-2671"
		}
		if len(g) == 3 && g[0].n == 3 && g[1].n == 3 && g[2].n == 4 && !g[1].paren && !g[2].paren {
			if s[g[0].at] < '2' || s[g[1].at] < '2' { // area code and exchange start 2-9
				return false
			}
			if g[0].paren {
				return (g[1].sep == 0 || g[1].sep == ' ') && g[2].sep != 0
			}
			return g[1].sep != 0 && g[1].sep == g[2].sep
		}
	}
	if first != '0' || len(gs) < 2 {
		return false
	}
	sep := gs[1].sep
	for i, g := range gs {
		if g.paren || i > 0 && (g.sep != sep || g.n < 2 || g.n > 8) {
			return false
		}
	}
	if sep == 0 || gs[0].n < 2 || gs[0].n > 5 {
		return false
	}
	if sep == '.' && len(gs) == 4 && gs[0].n <= 3 && gs[1].n <= 3 && gs[2].n <= 3 && gs[3].n <= 3 {
		return false // "010.001.002.003" is an address
	}
	if s[gs[0].at+1] == '0' { // "0049 30 123456": international with 00
		return digits >= 10 && digits <= 17
	}
	return digits >= 9 && digits <= 12
}

// findCards finds 13-19 digit card numbers with a known leading digit, written whole or
// in groups joined by one space or one dash, that pass the Luhn check.
func findCards(s string, st textStats, sc int, ms []match) []match {
	if st.numRun < 13 {
		return ms
	}
	for i := nextDigit(s, 0); i < len(s); {
		if j := skipDigits(s, i); j-i < 13 && !groupFollows(s, j) {
			i = nextDigit(s, j) // too short, and no more groups
			continue
		}
		end, ok := cardRun(s, i)
		if ok && numStart(s, i) && numEnd(s, end) && luhn(s[i:end]) {
			ms = append(ms, match{i, end, sc})
		}
		i = nextDigit(s, end)
	}
	return ms
}

// cardRun returns the end of the digit groups at s[i:] (joined by one space or one dash,
// the same throughout) and whether they have the shape of a card number.
func cardRun(s string, i int) (int, bool) {
	j := skipDigits(s, i)
	first, digits, groups, ok := j-i, j-i, 1, true
	var sep byte
	// A group of more than six digits is never part of a grouped card number: it is a
	// number of its own ("+1 415 555 2671 4111111111111111").
	for first <= 6 && j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
		if sep == 0 {
			sep = s[j]
		} else if s[j] != sep {
			break
		}
		k := skipDigits(s, j+1)
		n := k - j - 1
		if n > 6 {
			break
		}
		ok = ok && n >= 3
		digits += n
		groups++
		j = k
	}
	if !ok || digits < 13 || digits > 19 || groups > 1 && first != 4 {
		return j, false
	}
	// Card networks: 2221-2720 (Mastercard), 30/34-38 (Diners, Amex, JCB), 4 (Visa),
	// 5 (Mastercard, Maestro), 6 (Discover, UnionPay, Maestro). Others are not cards.
	switch d := s[i]; d {
	case '2':
		var n int
		for k, c := 0, 0; c < 4; k++ {
			if isDigit(s[i+k]) {
				n = n*10 + int(s[i+k]-'0')
				c++
			}
		}
		return j, n >= 2221 && n <= 2720
	case '3':
		d2 := s[i+1]
		return j, d2 == '0' || d2 >= '4' && d2 <= '8'
	case '4', '5', '6':
		return j, true
	}
	return j, false
}

// luhn reports whether the digits of s pass the Luhn check; other bytes are skipped.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		if !isDigit(s[i]) {
			continue
		}
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// findSSNs finds US social security numbers AAA-GG-SSSS or AAA GG SSSS, excluding area
// 000, 666 and 900-999, group 00 and serial 0000, which are never issued.
func findSSNs(s string, st textStats, sc int, ms []match) []match {
	if st.numRun < 9 {
		return ms
	}
	for i := nextDigit(s, 0); i < len(s); {
		j := skipDigits(s, i)
		if end := i + 11; j-i == 3 && end <= len(s) {
			sep := s[j]
			if (sep == '-' || sep == ' ') && isDigit(s[j+1]) && isDigit(s[j+2]) && s[j+3] == sep &&
				skipDigits(s, j+4) == end && numStart(s, i) && numEnd(s, end) && validSSN(s[i:end]) &&
				// With spaces, "12 345 67 8901" is one longer number, not an SSN.
				(sep != ' ' || (i < 2 || s[i-1] != ' ' || !isDigit(s[i-2])) && (end+1 >= len(s) || s[end] != ' ' || !isDigit(s[end+1]))) {
				ms = append(ms, match{i, end, sc})
				j = end
			}
		}
		i = nextDigit(s, j)
	}
	return ms
}

func validSSN(s string) bool {
	area, group, serial := s[0:3], s[4:6], s[7:11]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// findIBANs finds IBANs of the countries in ibanLengths: two capital letters, two check
// digits and the country's BBAN length, whole or in groups of four joined by single
// spaces, that pass the mod-97 check.
func findIBANs(s string, st textStats, sc int, ms []match) []match {
	if !st.iban || st.digits < 8 {
		return ms
	}
	for i := nextDigit(s, 0); i < len(s); {
		j := skipDigits(s, i)
		if p := i - 2; p >= 0 && j-i >= 2 && is(s[p], cUpper) && is(s[p+1], cUpper) && (p == 0 || !is(s[p-1], cAlnum)) {
			if end := ibanEnd(s, p); end > 0 {
				ms = append(ms, match{p, end, sc})
				j = end
			}
		}
		i = nextDigit(s, j)
	}
	return ms
}

func ibanEnd(s string, p int) int {
	want := int(ibanLengths[int(s[p]-'A')*26+int(s[p+1]-'A')])
	if want == 0 {
		return -1
	}
	spaced := p+4 < len(s) && s[p+4] == ' '
	j := p
	for n := 0; n < want; n++ {
		if spaced && n > 0 && n%4 == 0 {
			if j >= len(s) || s[j] != ' ' {
				return -1
			}
			j++
		}
		if j >= len(s) || !is(s[j], cUpper|cDigit) {
			return -1
		}
		j++
	}
	if j < len(s) && is(s[j], cAlnum) || !ibanValid(s[p:j]) {
		return -1
	}
	return j
}

// ibanValid computes the ISO 13616 check: the IBAN with its first four characters moved
// to the end, letters as 10-35, is 1 mod 97. Spaces are skipped.
func ibanValid(s string) bool {
	r := 0
	for k := range len(s) {
		c := s[(k+4)%len(s)]
		switch {
		case isDigit(c):
			r = (r*10 + int(c-'0')) % 97
		case is(c, cUpper):
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	return r == 1
}

// ibanLengths is the IBAN length of each country in the SWIFT IBAN registry, indexed by
// its two letters.
var ibanLengths = func() (t [26 * 26]uint8) {
	for _, e := range strings.Fields(`AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28
		CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23
		GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20
		LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29
		PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26
		UA29 VA22 VG24 XK20 YE30`) {
		t[int(e[0]-'A')*26+int(e[1]-'A')] = (e[2]-'0')*10 + e[3] - '0'
	}
	return t
}()

// findIPs finds IPv4 addresses (dotted quads, each octet 0-255 without leading zeros) and
// IPv6 addresses (two or more hex groups), each confirmed by net/netip.
func findIPs(s string, st textStats, sc int, ms []match) []match {
	if st.dots {
		ms = findIPv4(s, sc, ms)
	}
	return findIPv6(s, sc, ms)
}

func findIPv4(s string, sc int, ms []match) []match {
	for at := 0; at < len(s); {
		k := strings.IndexByte(s[at:], '.')
		if k < 0 {
			break
		}
		k += at
		at = k + 1
		if k == 0 || !isDigit(s[k-1]) {
			continue
		}
		i := k - 1
		for i > 0 && isDigit(s[i-1]) {
			i--
		}
		if k-i > 3 || i > 0 && (is(s[i-1], cAlnum) || s[i-1] == '_' || s[i-1] == '.' && i >= 2 && isDigit(s[i-2])) {
			continue
		}
		j := i
		for octet := range 4 {
			if octet > 0 {
				if j >= len(s) || s[j] != '.' {
					j = -1
					break
				}
				j++
			}
			e := skipDigits(s, j)
			if e == j || e-j > 3 {
				j = -1
				break
			}
			j = e
		}
		// Unlike other numbers, an address may be followed by ":port" or "-" and another.
		if j < 0 || j < len(s) && (is(s[j], cAlnum) || s[j] == '_' || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1])) {
			continue
		}
		if a, err := netip.ParseAddr(s[i:j]); err == nil && a.Is4() {
			ms = append(ms, match{i, j, sc})
			at = j
		}
	}
	return ms
}

func findIPv6(s string, sc int, ms []match) []match {
	for at := 0; at < len(s); {
		k := strings.IndexByte(s[at:], ':')
		if k < 0 {
			break
		}
		k += at
		i, j := k, k+1
		for i > 0 && (is(s[i-1], cHex) || s[i-1] == ':' || s[i-1] == '.') {
			i--
		}
		for j < len(s) && (is(s[j], cHex) || s[j] == ':' || s[j] == '.') {
			j++
		}
		at = j
		for i < j && s[i] == '.' {
			i++
		}
		// One full stop or colon may follow the address ("at fe80::1.", "fe80::1: up"). Two
		// do not: the run is something else, and trimming more would let the next byte
		// of a stream turn a confirmed address back into no address.
		if j > i && (s[j-1] == '.' || s[j-1] == ':' && (j-2 < i || s[j-2] != ':')) {
			j--
		}
		if j == i || s[j-1] == '.' || i > 0 && (is(s[i-1], cAlnum) || s[i-1] == '_') || j < len(s) && (is(s[j], cAlnum) || s[j] == '_') {
			continue
		}
		colons, groups := 0, 0
		for x := i; x < j; x++ {
			if s[x] == ':' {
				colons++
			} else if is(s[x], cHex) && (x == i || s[x-1] == ':') {
				groups++
			}
		}
		if colons < 2 || groups < 2 {
			continue
		}
		if a, err := netip.ParseAddr(s[i:j]); err == nil && a.Is6() {
			ms = append(ms, match{i, j, sc})
		}
	}
	return ms
}
