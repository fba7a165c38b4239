package captcha

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func seeded(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func mustNew(t testing.TB, rng *rand.Rand) Challenge {
	t.Helper()
	c, err := New(rng)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func decode(t testing.TB, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode png: %v", err)
	}
	return img
}

// solve parses "a op b = ?", checks the operands' ranges and computes the answer independently of the
// package's own arithmetic.
func solve(t *testing.T, q string) int {
	t.Helper()
	f := strings.Fields(q)
	if len(f) != 5 || f[3] != "=" || f[4] != "?" {
		t.Fatalf("question %q: want \"a op b = ?\"", q)
	}
	a, err1 := strconv.Atoi(f[0])
	b, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("question %q: operands are not integers", q)
	}
	if a < 100 || a > 999 {
		t.Fatalf("question %q: first operand not three digits", q)
	}
	switch f[1] {
	case "+":
		if b < 100 || b > 999 {
			t.Fatalf("question %q: second operand not three digits", q)
		}
		return a + b
	case "-":
		if b < 10 || b > 99 {
			t.Fatalf("question %q: second operand not two digits", q)
		}
		return a - b
	}
	t.Fatalf("question %q: unknown operator %q", q, f[1])
	return 0
}

// TestAnswerSpace checks that blind guessing does not pay: over many
// questions the most frequent answer comes up less than 0.2 % of the time
// (so answering it every time wins less than that), and there are at least
// 1,000 different answers.
func TestAnswerSpace(t *testing.T) {
	const n = 200_000
	rng := seeded(7)
	count := map[string]int{}
	for range n {
		_, a := question(rng)
		count[a]++
	}
	top, topN := "", 0
	for a, c := range count {
		if c > topN {
			top, topN = a, c
		}
	}
	if p := float64(topN) / n; p >= 0.002 {
		t.Errorf("answer %q came up %d times in %d (%.3f %%): blind guessing wins too often", top, topN, n, 100*p)
	}
	if len(count) < 1000 {
		t.Errorf("%d different answers in %d questions, want at least 1,000", len(count), n)
	}
	if c := count["1"]; float64(c)/n >= 0.002 {
		t.Errorf("answer \"1\" came up %d times in %d", c, n)
	}
}

func TestImageSize(t *testing.T) {
	c := mustNew(t, seeded(1))
	b := decode(t, c.PNG).Bounds()
	if b.Dx() != Width || b.Dy() != Height {
		t.Fatalf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), Width, Height)
	}
}

func TestAnswerMatchesQuestion(t *testing.T) {
	ops := map[string]int{}
	const n = 3000
	for seed := range uint64(n) {
		c := mustNew(t, seeded(seed))
		want := solve(t, c.Question)
		if c.Answer != strconv.Itoa(want) {
			t.Fatalf("seed %d: %q answered %q, want %d", seed, c.Question, c.Answer, want)
		}
		if !Check(c.Answer, strconv.Itoa(want)) {
			t.Fatalf("seed %d: Check rejects the right answer", seed)
		}
		for _, r := range c.Question {
			if _, ok := font[r]; !ok && r != ' ' {
				t.Fatalf("seed %d: %q has %q, which the font cannot draw", seed, c.Question, r)
			}
		}
		ops[strings.Fields(c.Question)[1]]++
	}
	for _, op := range []string{"+", "-"} {
		if ops[op] < n/3 {
			t.Errorf("operator %q used %d times in %d, want a fair share", op, ops[op], n)
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, b := mustNew(t, seeded(42)), mustNew(t, seeded(42))
	if a.Question != b.Question || !bytes.Equal(a.PNG, b.PNG) {
		t.Fatal("the same seed gave different challenges")
	}
}

func TestSeedsGiveDifferentImages(t *testing.T) {
	seen := map[string]uint64{}
	for seed := range uint64(300) {
		c := mustNew(t, seeded(seed))
		if prev, ok := seen[string(c.PNG)]; ok {
			t.Fatalf("seeds %d and %d gave the same image", prev, seed)
		}
		seen[string(c.PNG)] = seed
	}
}

// TestGlyphInk checks the rendering is not blank: a good share of pixels
// carry an ink colour, far more than the noise alone puts there.
func TestGlyphInk(t *testing.T) {
	isInk := map[color.RGBA]bool{}
	for _, c := range inks {
		isInk[c.(color.RGBA)] = true
	}
	for seed := range uint64(50) {
		img := decode(t, mustNew(t, seeded(seed)).PNG)
		n := 0
		for y := range Height {
			for x := range Width {
				r, g, b, a := img.At(x, y).RGBA()
				if isInk[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}] {
					n++
				}
			}
		}
		share := float64(n) / (Width * Height)
		if share < 0.08 || share > 0.5 {
			t.Errorf("seed %d: %.1f%% of pixels are ink, want 8%%..50%%", seed, share*100)
		}
	}
}

func TestNewRandom(t *testing.T) {
	var wg sync.WaitGroup
	out := make([]Challenge, 16)
	errs := make([]error, 16)
	for i := range out {
		wg.Go(func() { out[i], errs[i] = NewRandom() })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, c := range out {
		if errs[i] != nil {
			t.Fatalf("NewRandom: %v", errs[i])
		}
		decode(t, c.PNG)
		if seen[string(c.PNG)] {
			t.Fatal("NewRandom repeated an image")
		}
		seen[string(c.PNG)] = true
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		answer, given string
		want          bool
	}{
		{"7", "7", true},
		{"7", " 7 ", true},
		{"7", "07", true},
		{"0", "000", true},
		{"56", "\t56\n", true},
		{"7", "8", false},
		{"7", "", false},
		{"7", "seven", false},
		{"7", "7.0", false},
		{"7", "7a", false},
		{"7", "0x7", false},
		{"", "", false},
		{"x", "x", false},
		{"7", "99999999999999999999999", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%q", tt.answer, tt.given), func(t *testing.T) {
			if got := Check(tt.answer, tt.given); got != tt.want {
				t.Errorf("Check(%q, %q) = %v, want %v", tt.answer, tt.given, got, tt.want)
			}
		})
	}
}

// TestWriteSamples writes a few images to $CAPTCHA_SAMPLES for a person to
// look at; it skips when the variable is unset.
func TestWriteSamples(t *testing.T) {
	dir := os.Getenv("CAPTCHA_SAMPLES")
	if dir == "" {
		t.Skip("set CAPTCHA_SAMPLES to a directory to write sample images")
	}
	for seed := range uint64(8) {
		c := mustNew(t, seeded(seed))
		name := filepath.Join(dir, fmt.Sprintf("captcha-%d.png", seed))
		if err := os.WriteFile(name, c.PNG, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", name, c.Question)
	}
}

func BenchmarkNew(b *testing.B) {
	rng := seeded(1)
	size := 0
	for b.Loop() {
		c, err := New(rng)
		if err != nil {
			b.Fatal(err)
		}
		size += len(c.PNG)
	}
	b.ReportMetric(float64(size)/float64(b.N), "png-bytes/op")
}

func BenchmarkNewRandom(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := NewRandom(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
