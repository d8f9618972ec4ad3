package guardrail

import "strings"

// The secret scanners find each vendor's fixed prefix by its rarest byte (findAt), then
// read the token's body. A token must start a word: "task-..." holds no "sk-" key.

// tokenEnd returns the end of the token at s[k:] with a prefix of plen bytes and a body
// of lo..hi bytes of class body (hi 0: unbounded), or -1. With exact, the token may
// not run on into more token bytes (a fixed-length key followed by letters is something
// else).
func tokenEnd(s string, k, plen int, body uint16, lo, hi int, exact bool) int {
	if !tokenStart(s, k) {
		return -1
	}
	b := k + plen
	j := b
	for j < len(s) && is(s[j], body) {
		j++
	}
	if j-b < lo || hi > 0 && j-b > hi || exact && j < len(s) && is(s[j], cKey) {
		return -1
	}
	return j
}

// findAt appends the tokens that end finds at each occurrence of byte c, which every
// token has at offset off. The anchor is the token's rarest byte in prose ('-' rather
// than the 's' of "sk-"), so that IndexByte skips most of the text; end checks the rest
// of the prefix and returns the token's end, or -1.
func findAt(s string, c byte, off, sc int, ms []match, end func(s string, k int) int) []match {
	for at := off; at < len(s); {
		x := strings.IndexByte(s[at:], c)
		if x < 0 {
			break
		}
		x += at
		if j := end(s, x-off); j > 0 {
			ms = append(ms, match{x - off, j, sc})
			at = j + off
		} else {
			at = x + 1
		}
	}
	return ms
}

// hasDigitAndLetter keeps prose such as "sk-this-is-not-a-real-key" out: generated keys
// mix both.
func hasDigitAndLetter(s string) bool {
	var d, l bool
	for i := 0; i < len(s) && !(d && l); i++ {
		d = d || isDigit(s[i])
		l = l || is(s[i], cUpper|cLower)
	}
	return d && l
}

// findOpenAIKeys finds sk-..., sk-proj-..., sk-svcacct-... and sk-admin-... keys; the
// Anthropic and Sluice keys that share the "sk-" start have scanners of their own.
func findOpenAIKeys(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, '-', 2, sc, ms, func(s string, k int) int {
		if s[k] != 's' || s[k+1] != 'k' {
			return -1
		}
		j := tokenEnd(s, k, 3, cKey, 20, 0, false)
		if j < 0 {
			return -1
		}
		body := s[k+3 : j]
		if strings.HasPrefix(body, "ant-") || strings.HasPrefix(body, "sluice-") || !hasDigitAndLetter(body) {
			return -1
		}
		return j
	})
}

func findAnthropicKeys(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, '-', 2, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "sk-ant-") {
			return -1
		}
		return tokenEnd(s, k, 7, cKey, 20, 0, false)
	})
}

// findSluiceKeys finds Sluice virtual keys: "sk-sluice-" then 32 base62 characters of
// randomness and 6 of checksum (package vkey). The checksum is not verified: a mistyped
// key is still a key someone should not paste, and the prefix alone is specific enough.
func findSluiceKeys(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, '-', 2, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "sk-sluice-") {
			return -1
		}
		return tokenEnd(s, k, 10, cAlnum, 38, 0, false)
	})
}

// findAWSKeys finds access key ids: AKIA (long-term) or ASIA (temporary) and 16 capital
// letters or digits.
func findAWSKeys(s string, _ textStats, sc int, ms []match) []match {
	ms = findAt(s, 'K', 1, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "AKIA") {
			return -1
		}
		return tokenEnd(s, k, 4, cUpper|cDigit, 16, 16, true)
	})
	return findAt(s, 'S', 1, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "ASIA") {
			return -1
		}
		return tokenEnd(s, k, 4, cUpper|cDigit, 16, 16, true)
	})
}

// findGitHubTokens finds classic tokens (ghp_, gho_, ghu_, ghs_, ghr_ and 36 or more
// letters and digits) and fine-grained ones (github_pat_...).
func findGitHubTokens(s string, _ textStats, sc int, ms []match) []match {
	ms = findAt(s, '_', 3, sc, ms, func(s string, k int) int {
		if s[k] != 'g' || s[k+1] != 'h' || !strings.ContainsRune("pousr", rune(s[k+2])) {
			return -1
		}
		return tokenEnd(s, k, 4, cAlnum, 36, 255, true)
	})
	return findAt(s, '_', 6, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "github_pat_") {
			return -1
		}
		return tokenEnd(s, k, 11, cWord, 22, 0, true)
	})
}

func findGoogleKeys(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, 'z', 2, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "AIza") {
			return -1
		}
		return tokenEnd(s, k, 4, cKey, 35, 35, true)
	})
}

// findSlackTokens finds xoxa-, xoxb-, xoxp-, xoxr- and xoxs- tokens.
func findSlackTokens(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, '-', 4, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], "xox") || !strings.ContainsRune("abprs", rune(s[k+3])) {
			return -1
		}
		j := tokenEnd(s, k, 5, cDashed, 10, 0, false)
		if j < 0 || nextDigit(s[:j], k+5) == j { // Slack tokens carry numeric ids
			return -1
		}
		return j
	})
}

// findJWTs finds JSON web tokens: three or more base64url segments joined by dots, the
// first starting "eyJ" ('{"' encoded).
func findJWTs(s string, _ textStats, sc int, ms []match) []match {
	return findAt(s, 'J', 2, sc, ms, func(s string, k int) int {
		if s[k] != 'e' || s[k+1] != 'y' || !tokenStart(s, k) {
			return -1
		}
		j := k
		for seg := 0; ; seg++ {
			if seg > 0 {
				if j+1 >= len(s) || s[j] != '.' || !is(s[j+1], cKey) {
					if seg < 3 {
						return -1
					}
					return j
				}
				j++
			}
			e := j
			for e < len(s) && is(s[e], cKey) {
				e++
			}
			if seg == 0 && e-j < 10 || e-j < 2 && seg < 3 {
				return -1
			}
			j = e
		}
	})
}

// findPrivateKeys finds PEM private keys from the BEGIN line through the matching END
// line. Without an END line the key runs to the end of the text: in a stream the rest
// may be on its way, so the whole key is held back.
func findPrivateKeys(s string, _ textStats, sc int, ms []match) []match {
	const begin, end = "-----BEGIN ", "-----END "
	return findAt(s, 'B', 5, sc, ms, func(s string, k int) int {
		if !strings.HasPrefix(s[k:], begin) {
			return -1
		}
		l := k + len(begin)
		e := l
		for e < len(s) && e-l < 64 && (is(s[e], cUpper|cDigit) || s[e] == ' ') {
			e++
		}
		label := s[l:e]
		if !strings.HasPrefix(s[e:], "-----") || !strings.Contains(label, "PRIVATE KEY") {
			return -1
		}
		for f := e + 5; ; {
			x := strings.Index(s[f:], end)
			if x < 0 {
				return len(s)
			}
			f += x + len(end)
			if strings.HasPrefix(s[f:], label) && strings.HasPrefix(s[f+len(label):], "-----") {
				return f + len(label) + 5
			}
		}
	})
}
