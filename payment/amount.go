package payment

import (
	"fmt"
	"strconv"
)

// ParseYuan parses an amount in yuan written with exactly two decimals
// ("12.34", "0.10") into cents, without floating point. It refuses
// anything else: a sign, exponents, one or three decimals, leading zeros
// ("01.00"), spaces, and amounts above MaxAmountCents.
func ParseYuan(s string) (int64, error) {
	n := len(s)
	if n < 4 || s[n-3] != '.' {
		return 0, fmt.Errorf("amount %q: want yuan with two decimals, like 12.34", s)
	}
	whole, frac := s[:n-3], s[n-2:]
	if !digits(whole) || !digits(frac) || (len(whole) > 1 && whole[0] == '0') {
		return 0, fmt.Errorf("amount %q: want yuan with two decimals, like 12.34", s)
	}
	if len(whole) > 12 { // far above the limit; keeps ParseInt from overflowing
		return 0, fmt.Errorf("amount %q: above the limit", s)
	}
	y, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: %w", s, err)
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	cents := y*100 + f
	if cents > MaxAmountCents {
		return 0, fmt.Errorf("amount %q: above the limit", s)
	}
	return cents, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatYuan writes cents as yuan with two decimals: 1234 → "12.34",
// 5 → "0.05". Negative amounts get a leading "-" (they are never sent).
func FormatYuan(cents int64) string {
	sign := ""
	u := uint64(cents)
	if cents < 0 {
		sign, u = "-", uint64(-cents)
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}
