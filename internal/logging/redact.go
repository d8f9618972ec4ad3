package logging

import (
	"encoding/base64"
	"strings"
)

// Placeholder replaces every credential [Redact] finds. Where a credential has a fixed,
// public prefix (sk-ant-, AKIA, ghp_, Bearer, …) the prefix is kept in front of it, so a
// reader still sees what kind of secret was there.
const Placeholder = "[REDACTED]"

// Redact returns s with every credential it recognises replaced by [Placeholder]:
//
//   - Sluice virtual keys (sk-sluice-…), OpenAI keys (sk-…, sk-proj-…, sk-svcacct-…,
//     sk-admin-…) and Anthropic keys (sk-ant-…);
//   - the credential after "Bearer " and "Basic " (case-insensitive; a Basic credential must
//     decode to user:password);
//   - AWS access key ids (AKIA…, ASIA…), GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_,
//     github_pat_), Google API keys (AIza…), Slack tokens (xoxb-, xoxp-, …), JWTs
//     (eyJ….….…) and PEM private-key blocks;
//   - the value in a key=value pair (a query parameter too), "key":"value", key:value or
//     Header-Name: value whose key name is a secret's: api_key, apikey, api-key,
//     authorization, password, passwd, secret, secret_key, private_key, access_key, token
//     or signature, case-insensitive, alone or as the last word of a longer name
//     (client_secret, X-Api-Key, accessToken; not max_tokens or monkey);
//   - the password in a URL's user info (redis://:pw@host, postgres://u:pw@host).
//
// It is one pass over s with a byte-class table: a string with nothing secret-looking is
// returned as is, without allocating. A replacement ends before a closing quote or at a
// backslash, so JSON normally stays valid; it can break where a quote is ambiguous (a
// string ending in "token=" inside an array) or a PEM block has no END line (redacted to
// the end of s), so a caller that needs valid JSON must check, as the handler does.
// Recognition is by shape, so it errs towards redacting: a
// 20-character kebab-case word after "sk-" is redacted too. Lowercase "name: value" is
// left alone, since that is how Go wraps errors ("verify token: signature is invalid").
func Redact(s string) string {
	r, _ := redact(s)
	return r
}

// Byte classes, as bit sets in class.
const (
	cAlnum    = 1 << iota // A-Z a-z 0-9
	cWord                 // alnum and _
	cKey                  // word and -: base64url, key bodies
	cToken                // key and . ~ + / =: an RFC 6750 b64token
	cUpperNum             // A-Z 0-9
	cStart                // the first byte of a prefix shape (sk-, Bearer, AKIA, …)
	cOther                // any other byte a recognizer starts at: = : - (PEM)
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		lower, upper, digit := 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9'
		if lower || upper || digit {
			t[c] |= cAlnum | cWord | cKey | cToken
		}
		if upper || digit {
			t[c] |= cUpperNum
		}
	}
	t['_'] |= cWord | cKey | cToken
	t['-'] |= cKey | cToken | cOther
	for _, c := range ".~+/=" {
		t[c] |= cToken
	}
	for _, c := range "sBbAgxe" {
		t[c] |= cStart
	}
	t['='] |= cOther
	t[':'] |= cOther
	return t
}()

// redact is Redact, also reporting whether anything was replaced.
func redact(s string) (string, bool) {
	var b strings.Builder
	last := 0 // s[last:] is not yet copied to b
	for i := 0; i < len(s); i++ {
		f := class[s[i]]
		if f&(cStart|cOther) == 0 {
			continue
		}
		if f&cStart != 0 && i > 0 && class[s[i-1]]&cWord != 0 {
			continue // shapes start at a word boundary: "task-…" holds no "sk-" key
		}
		from, to := match(s, i)
		if to <= from {
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s) + len(Placeholder))
		}
		b.WriteString(s[last:from])
		b.WriteString(Placeholder)
		last = to
		i = to - 1
	}
	if last == 0 {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// match tries the recognizers that can start at s[i] and returns the span s[from:to] to
// replace; to <= from means no match. For a prefix shape, s[i] is at a word boundary.
func match(s string, i int) (from, to int) {
	var next byte
	if i+1 < len(s) {
		next = s[i+1]
	}
	switch s[i] {
	case '=':
		return keyValue(s, i)
	case ':':
		if next == '/' && strings.HasPrefix(s[i+1:], "//") {
			return urlPassword(s, i+3)
		}
		return keyValue(s, i)
	case '-':
		if next == '-' {
			return pemBlock(s, i)
		}
	case 's':
		if next == 'k' {
			return skKey(s, i)
		}
	case 'B', 'b':
		if next == 'e' || next == 'E' || next == 'a' || next == 'A' {
			return authScheme(s, i)
		}
	case 'A':
		if next == 'K' || next == 'S' || next == 'I' {
			return awsOrGoogle(s, i)
		}
	case 'g':
		if next == 'h' || next == 'i' {
			return github(s, i)
		}
	case 'x':
		if next == 'o' {
			return slack(s, i)
		}
	case 'e':
		if next == 'y' {
			return jwt(s, i)
		}
	}
	return 0, 0
}

func isAlnum(c byte) bool     { return class[c]&cAlnum != 0 }
func isWord(c byte) bool      { return class[c]&cWord != 0 }
func isKeyChar(c byte) bool   { return class[c]&cKey != 0 }
func isTokenChar(c byte) bool { return class[c]&cToken != 0 }
func isUpperNum(c byte) bool  { return class[c]&cUpperNum != 0 }
func isSpace(c byte) bool     { return c == ' ' || c == '\t' }

// run returns the end of the run of bytes in class starting at i.
func run(s string, i int, class func(byte) bool) int {
	for i < len(s) && class(s[i]) {
		i++
	}
	return i
}

// skPrefixes are the sk- key families, longest first; each needs 8 body characters, a
// bare "sk-" 20.
var skPrefixes = []string{"sk-svcacct-", "sk-sluice-", "sk-admin-", "sk-proj-", "sk-ant-"}

func skKey(s string, i int) (int, int) {
	if !strings.HasPrefix(s[i:], "sk-") {
		return 0, 0
	}
	keep, minBody := 3, 20
	for _, p := range skPrefixes {
		if strings.HasPrefix(s[i:], p) {
			keep, minBody = len(p), 8
			break
		}
	}
	from := i + keep
	to := run(s, from, isKeyChar)
	if to-from < minBody {
		return 0, 0
	}
	return from, to
}

// authScheme matches "Bearer <token>" (8 or more token characters) and "Basic <base64 of
// user:password>".
func authScheme(s string, i int) (int, int) {
	var basic bool
	switch {
	case len(s) >= i+7 && strings.EqualFold(s[i:i+6], "bearer") && isSpace(s[i+6]):
	case len(s) >= i+6 && strings.EqualFold(s[i:i+5], "basic") && isSpace(s[i+5]):
		basic = true
	default:
		return 0, 0
	}
	from := run(s, i+5, isSpace)
	if !basic {
		from = run(s, i+6, isSpace)
	}
	to := run(s, from, isTokenChar)
	switch {
	case basic && !isBasicCredential(s[from:to]):
		return 0, 0
	case !basic && to-from < 8:
		return 0, 0
	}
	return from, to
}

// isBasicCredential reports whether tok is base64 of user:password, so that "basic checks
// passed" is left alone. Very long values are taken as credentials without decoding.
func isBasicCredential(tok string) bool {
	if len(tok) < 4 {
		return false
	}
	if len(tok) > 256 {
		return true
	}
	var buf [192]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(tok))
	if err != nil {
		n, err = base64.RawStdEncoding.Decode(buf[:], []byte(tok))
		if err != nil {
			return false
		}
	}
	return strings.IndexByte(string(buf[:n]), ':') > 0
}

// awsOrGoogle matches AWS access key ids (AKIA or ASIA and 16 upper-case alphanumerics,
// no more) and Google API keys (AIza and 30 or more key characters).
func awsOrGoogle(s string, i int) (int, int) {
	switch {
	case strings.HasPrefix(s[i:], "AKIA"), strings.HasPrefix(s[i:], "ASIA"):
		from := i + 4
		to := run(s, from, isUpperNum)
		if to-from != 16 || to < len(s) && isAlnum(s[to]) {
			return 0, 0
		}
		return from, to
	case strings.HasPrefix(s[i:], "AIza"):
		from := i + 4
		if to := run(s, from, isKeyChar); to-from >= 30 {
			return from, to
		}
	}
	return 0, 0
}

var githubPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}

func github(s string, i int) (int, int) {
	if strings.HasPrefix(s[i:], "github_pat_") {
		from := i + len("github_pat_")
		if to := run(s, from, isWord); to-from >= 22 {
			return from, to
		}
		return 0, 0
	}
	for _, p := range githubPrefixes {
		if strings.HasPrefix(s[i:], p) {
			from := i + len(p)
			if to := run(s, from, isAlnum); to-from >= 30 {
				return from, to
			}
			return 0, 0
		}
	}
	return 0, 0
}

func slack(s string, i int) (int, int) {
	if len(s) < i+5 || !strings.HasPrefix(s[i:], "xox") || s[i+4] != '-' ||
		strings.IndexByte("abeoprs", s[i+3]) < 0 {
		return 0, 0
	}
	from := i + 5
	if to := run(s, from, isKeyChar); to-from >= 10 {
		return from, to
	}
	return 0, 0
}

// jwt matches header.payload.signature where the header is base64url JSON ("eyJ").
func jwt(s string, i int) (int, int) {
	if !strings.HasPrefix(s[i:], "eyJ") {
		return 0, 0
	}
	h := run(s, i, isKeyChar)
	if h-i < 10 || h >= len(s) || s[h] != '.' {
		return 0, 0
	}
	p := run(s, h+1, isKeyChar)
	if p-h-1 < 2 || p >= len(s) || s[p] != '.' {
		return 0, 0
	}
	return i, run(s, p+1, isKeyChar)
}

// pemBlock matches the body of a PEM private key, keeping its BEGIN and END lines; a
// block cut short is redacted to the end of s.
func pemBlock(s string, i int) (int, int) {
	const begin, dashes = "-----BEGIN ", "-----"
	if !strings.HasPrefix(s[i:], begin) {
		return 0, 0
	}
	rest := s[i+len(begin):]
	n := strings.Index(rest, dashes)
	if n < 0 || !strings.Contains(rest[:n], "PRIVATE KEY") {
		return 0, 0
	}
	from := i + len(begin) + n + len(dashes)
	end := strings.Index(s[from:], "-----END ")
	if end < 0 {
		return from, len(s)
	}
	return from, from + end
}

// secretNames are the key names whose values are secrets; see Redact.
var secretNames = []string{
	"authorization", "api_key", "apikey", "api-key", "password", "passwd", "secret",
	"secret_key", "private_key", "access_key", "token", "signature",
}

// keyValue matches the value after the separator at s[i] when the name before it is a
// secret's.
func keyValue(s string, i int) (int, int) {
	// The name: optional spaces, an optional closing quote (JSON, possibly escaped inside
	// another JSON string, or Python's single quote), then the name itself.
	j := i
	for j > 0 && isSpace(s[j-1]) {
		j--
	}
	quotedName := j > 0 && (s[j-1] == '"' || s[j-1] == '\'')
	if quotedName {
		j--
		if j > 0 && s[j-1] == '\\' {
			j--
		}
	}
	if j == 0 || secretNamesByLast[s[j-1]|0x20] == nil {
		return 0, 0 // the cheap exit for "status=502", "https:", "12:30"
	}
	end := j
	for j > 0 && (isKeyChar(s[j-1]) || s[j-1] == '.') {
		j--
	}
	name := s[j:end]
	if !isSecretName(name) {
		return 0, 0
	}
	k := run(s, i+1, isSpace)
	if k >= len(s) {
		return 0, 0
	}
	if k > i+1 { // a space after the separator
		switch {
		case s[i] == '=' && end == i && !quotedName:
			return 0, 0 // "password= next": the value is empty
		case s[k] == '"' || s[k] == '\'':
		case s[i] == ':' && !quotedName && !('A' <= name[0] && name[0] <= 'Z'):
			// "name: value" is also how Go wraps errors ("verify token: signature is
			// invalid"), so an unquoted name before ": " counts only in header style.
			return 0, 0
		}
	}
	if strings.HasPrefix(s[k:], "-----BEGIN ") {
		if from, to := pemBlock(s, k); to > from {
			return k, to
		}
	}
	auth := hasSuffixFold(name, "authorization")
	switch c := s[k]; {
	case c == '"' || c == '\'':
		from, to := quoted(s, k+1, c)
		if !quotedName && structural(s[from:to]) {
			// In {"msg":"token=","n":1} the quote ends the string around "token=";
			// what it seems to open is JSON between two strings.
			return 0, 0
		}
		return from, to
	case c == '\\' && k+1 < len(s) && s[k+1] == '"': // \"value\" inside a JSON string
		from := k + 2
		to := strings.Index(s[from:], `\"`)
		if to < 0 {
			return from, len(s)
		}
		return from, from + to
	case c == '{' || strings.HasPrefix(s[k:], Placeholder):
		return 0, 0 // an object (its members are scanned in turn), or already redacted
	case c == '[': // Go's %v of a []string, as in an http.Header dump
		if k+1 < len(s) && (s[k+1] == '"' || s[k+1] == '{' || s[k+1] == '[') {
			return 0, 0
		}
		k++
	}
	to := k
	for to < len(s) && !endsValue(s[to], auth) {
		to++
	}
	switch v := s[k:to]; {
	case v == "null" || v == "true" || v == "false":
		return 0, 0
	case to < len(s) && isSpace(s[to]) && isAuthScheme(v):
		// "token=Bearer abc": the credential is the next word.
		to = run(s, to, isSpace)
		for to < len(s) && !endsValue(s[to], false) {
			to++
		}
	}
	return k, to
}

// structural reports whether s holds only JSON punctuation and white space.
func structural(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', ':', '{', '}', '[', ']', ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

func isAuthScheme(w string) bool {
	return strings.EqualFold(w, "bearer") || strings.EqualFold(w, "basic") || strings.EqualFold(w, "token")
}

// endsValue reports whether c ends an unquoted value. An Authorization value ("Bearer x",
// "Digest a=1, b=2") runs to the end of the line.
func endsValue(c byte, auth bool) bool {
	switch c {
	case '\n', '\r', '"', '\\', '&', ']':
		return true
	case ' ', '\t', ',', ';', '\'', ')', '}', '>', '<':
		return !auth
	}
	return false
}

// quoted returns the span of a string value opened by quote q just before s[from], up
// to the matching quote (escapes skipped) or the end of s.
func quoted(s string, from int, q byte) (int, int) {
	for j := from; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			if strings.HasPrefix(s[from:j], Placeholder) {
				return 0, 0
			}
			return from, j
		}
	}
	return from, len(s)
}

// secretNamesByLast indexes secretNames by their last byte, so that most names are
// rejected by one table look-up.
var secretNamesByLast = func() (t [256][]string) {
	for _, n := range secretNames {
		t[n[len(n)-1]] = append(t[n[len(n)-1]], n)
	}
	return t
}()

// isSecretName reports whether name is, or ends with a word that is, one of secretNames.
// A word starts after a non-letter or at a lower-to-upper case change (clientSecret).
func isSecretName(name string) bool {
	if name == "" {
		return false
	}
	for _, w := range secretNamesByLast[name[len(name)-1]|0x20] {
		if !hasSuffixFold(name, w) {
			continue
		}
		at := len(name) - len(w)
		if at == 0 {
			return true
		}
		prev, first := name[at-1], name[at]
		if !isLetter(prev) || 'a' <= prev && prev <= 'z' && 'A' <= first && first <= 'Z' {
			return true
		}
	}
	return false
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// urlPassword matches the password in the user info of the URL whose authority starts at
// s[i] (just after "://").
func urlPassword(s string, i int) (int, int) {
	end := i
	for end < len(s) && !endsAuthority(s[end]) {
		end++
	}
	at := strings.LastIndexByte(s[i:end], '@')
	if at < 0 {
		return 0, 0
	}
	colon := strings.IndexByte(s[i:i+at], ':')
	if colon < 0 || colon+1 == at {
		return 0, 0
	}
	if strings.HasPrefix(s[i+colon+1:], Placeholder) {
		return 0, 0
	}
	return i + colon + 1, i + at
}

func endsAuthority(c byte) bool {
	switch c {
	case '/', '?', '#', '"', '\'', ' ', '\t', '\n', '\\', '<', '>':
		return true
	}
	return false
}
