// Package money is integer money: amounts in billionths of a US dollar, parsed and
// printed exactly, never through a float.
package money

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// NanoUSD is an amount of money in billionths of a US dollar. Money is integer everywhere
// in Sluice: no float ever holds a price, a spend or a limit. The largest amount is about
// 9.2 billion USD.
type NanoUSD int64

// NanoPerUSD is the number of NanoUSD in one dollar.
const NanoPerUSD NanoUSD = 1_000_000_000

const usdDecimals = 9

// ParseUSD parses a non-negative decimal amount of dollars ("5000", "12.50",
// "0.000000001") exactly. It rejects signs, exponents, more than nine decimals, empty parts
// ("5.", ".5") and amounts that overflow.
func ParseUSD(s string) (NanoUSD, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") {
		return 0, fmt.Errorf("amount %q: want a decimal number of dollars such as 5000 or 12.50", s)
	}
	if !allDigits(intPart) || !allDigits(frac) {
		return 0, fmt.Errorf("amount %q: want a decimal number of dollars such as 5000 or 12.50 (no sign, no exponent)", s)
	}
	if len(frac) > usdDecimals {
		return 0, fmt.Errorf("amount %q: at most %d decimal places", s, usdDecimals)
	}
	whole, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || whole > math.MaxInt64/int64(NanoPerUSD) {
		return 0, fmt.Errorf("amount %q: too large", s)
	}
	n := whole * int64(NanoPerUSD)
	if frac != "" {
		f, _ := strconv.ParseInt(frac+strings.Repeat("0", usdDecimals-len(frac)), 10, 64)
		if n > math.MaxInt64-f {
			return 0, fmt.Errorf("amount %q: too large", s)
		}
		n += f
	}
	return NanoUSD(n), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats n as dollars with no trailing zeros: "5000", "12.5", "0.000000001".
func (n NanoUSD) String() string {
	neg := n < 0
	u := uint64(n)
	if neg {
		u = uint64(-n) // -MinInt64 wraps to itself, and uint64 of it is still right
	}
	whole, frac := u/uint64(NanoPerUSD), u%uint64(NanoPerUSD)
	s := strconv.FormatUint(whole, 10)
	if frac != 0 {
		f := fmt.Sprintf("%09d", frac)
		s += "." + strings.TrimRight(f, "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes the amount as a decimal string, e.g. "12.5".
func (n NanoUSD) MarshalJSON() ([]byte, error) { return json.Marshal(n.String()) }

// UnmarshalJSON accepts a decimal string ("12.50") or a bare JSON number written the same
// way (12.50); either is parsed exactly by ParseUSD, never through a float.
func (n *NanoUSD) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else if s == "null" {
		return errors.New("amount: null is not an amount")
	}
	v, err := ParseUSD(s)
	if err != nil {
		return err
	}
	*n = v
	return nil
}
