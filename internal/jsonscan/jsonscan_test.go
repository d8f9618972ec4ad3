package jsonscan

import "testing"

func TestValueEnd(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want int
	}{
		{`"a\"b" ,`, 6},
		{`"a\\" ,`, 5},
		{`{"a":[1,"}"]} x`, 13},
		{`[1,[2,[3]]]`, 11},
		{`true,`, 4},
		{`-1.5e3}`, 6},
		{`"open`, -1},
		{`{"a":1`, -1},
		{`}`, -1},
		{``, -1},
	} {
		if got := ValueEnd(tc.s, 0); got != tc.want {
			t.Errorf("ValueEnd(%q) = %d, want %d", tc.s, got, tc.want)
		}
	}
	if SkipSpace(" \t\r\nx", 0) != 4 || String(nil) != "" || String([]byte("ab")) != "ab" {
		t.Error("helpers")
	}
}
