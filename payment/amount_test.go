package payment_test

import (
	"testing"

	"seckill/payment"
)

func TestParseYuan(t *testing.T) {
	good := map[string]int64{
		"0.10": 10, "12.34": 1234, "0.01": 1, "0.00": 0, "1.00": 100,
		"99999999.99": 9_999_999_999, "100000000.00": payment.MaxAmountCents,
		// Float parsing would give 1.15*100 = 114.99999999999999 here.
		"1.15": 115, "0.29": 29, "4.35": 435,
	}
	for s, want := range good {
		got, err := payment.ParseYuan(s)
		if err != nil || got != want {
			t.Errorf("ParseYuan(%q) = %d, %v; want %d", s, got, err, want)
		}
		if s != "0.00" && payment.FormatYuan(want) != s {
			t.Errorf("FormatYuan(%d) = %q, want %q", want, payment.FormatYuan(want), s)
		}
	}
	bad := []string{
		"", "1", "1.2", "1.234", "-1.00", "+1.00", "1e3", "1e3.00", "1.0e", ".12", "1.", "01.00",
		" 1.00", "1.00 ", "1,00", "1.-1", "0x1.00", "１.00", "100000000.01", "9223372036854775807.00",
		"99999999999999999999.00", "NaN", "Inf.00",
	}
	for _, s := range bad {
		if got, err := payment.ParseYuan(s); err == nil {
			t.Errorf("ParseYuan(%q) = %d, want an error", s, got)
		}
	}
}

func TestFormatYuan(t *testing.T) {
	for cents, want := range map[int64]string{0: "0.00", 5: "0.05", 10: "0.10", 1234: "12.34", -150: "-1.50"} {
		if got := payment.FormatYuan(cents); got != want {
			t.Errorf("FormatYuan(%d) = %q, want %q", cents, got, want)
		}
	}
}
