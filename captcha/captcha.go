// Package captcha makes arithmetic captchas: a small question such as
// "347 + 586 = ?" drawn into a PNG by our own bitmap-font renderer, with the
// glyphs coloured, jittered and slanted one by one and covered in dots and
// lines, so that a person reads it at a glance. It stops blind guessing,
// not a solver written for it (SECURITY.md, Captcha: two small ones read
// most or all of them).
//
// The package only makes and checks challenges. Storing them (single use,
// expiry) is the caller's business.
package captcha

import (
	"bytes"
	crand "crypto/rand"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"seckill"
)

// Width and Height are the size of every captcha image in pixels.
const (
	Width  = 160
	Height = 60
)

// Challenge is one captcha: the question it shows, the answer it expects and
// the picture of the question.
type Challenge struct {
	Question string // e.g. "347 + 586 = ?"; never shown to the client as text
	Answer   string // the decimal result, e.g. "933"
	PNG      []byte // a Width×Height PNG showing Question
}

// New makes a challenge from rng: the question, its answer and the image all
// derive from rng alone, so a fixed seed gives the same challenge. rng is not
// safe for concurrent use; give each goroutine its own, seeded from
// crypto/rand in production (or use NewRandom). The only error is a failure
// to encode the PNG.
func New(rng *rand.Rand) (Challenge, error) {
	q, a := question(rng)
	img := render(rng, q)
	var buf bytes.Buffer
	buf.Grow(4096)
	if err := encoder.Encode(&buf, img); err != nil {
		return Challenge{}, fmt.Errorf("captcha: encode png: %w", err)
	}
	return Challenge{Question: q, Answer: a, PNG: buf.Bytes()}, nil
}

// NewRandom makes a challenge from a fresh source seeded from crypto/rand.
// It is safe for concurrent use. It fails only if the system's random source
// or the PNG encoder fails.
func NewRandom() (Challenge, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return Challenge{}, fmt.Errorf("captcha: seed: %w", err)
	}
	return New(rand.New(rand.NewChaCha8(seed)))
}

// Maker is the seckill.CaptchaMaker of this package: NewRandom's
// challenges, checked by Check.
type Maker struct{}

var _ seckill.CaptchaMaker = Maker{}

// New makes a challenge with NewRandom and returns its answer and picture.
func (Maker) New() (string, []byte, error) {
	c, err := NewRandom()
	return c.Answer, c.PNG, err
}

// Check reports whether given answers a challenge whose answer is answer
// (see the function Check).
func (Maker) Check(answer, given string) bool { return Check(answer, given) }

// Check reports whether given answers a challenge whose answer is answer.
// Both are trimmed of surrounding spaces and compared as decimal integers, so
// "07" matches "7"; anything that is not an integer (including an empty
// string) never matches.
func Check(answer, given string) bool {
	want, err := strconv.Atoi(strings.TrimSpace(answer))
	if err != nil {
		return false
	}
	got, err := strconv.Atoi(strings.TrimSpace(given))
	if err != nil {
		return false
	}
	return want == got
}

// question picks the sum of two three-digit numbers or the difference of a
// three-digit and a two-digit one ("347 + 586 = ?", "503 - 47 = ?"): sums
// people work out in a few seconds, with answers from 1 to 1998 of which
// none comes up more than about once in 1,000 questions, so a bot that
// answers blindly wins about 0.1 % of the time.
func question(rng *rand.Rand) (q, answer string) {
	var a, b, r int
	var op string
	if rng.IntN(2) == 0 {
		a, b = 100+rng.IntN(900), 100+rng.IntN(900)
		op, r = "+", a+b
	} else {
		a, b = 100+rng.IntN(900), 10+rng.IntN(90)
		op, r = "-", a-b
	}
	return fmt.Sprintf("%d %s %d = ?", a, op, b), strconv.Itoa(r)
}

// The palette: paper first, then the ink colours glyphs are drawn in, then
// the pale colours of background texture. Noise uses both inks and pales so
// that the text cannot be separated from it by colour alone.
var (
	paper = color.RGBA{0xfa, 0xf7, 0xef, 0xff}
	inks  = []color.Color{
		color.RGBA{0x1f, 0x3a, 0x93, 0xff}, // blue
		color.RGBA{0x9b, 0x1c, 0x1c, 0xff}, // red
		color.RGBA{0x1b, 0x6b, 0x33, 0xff}, // green
		color.RGBA{0x5b, 0x2a, 0x86, 0xff}, // purple
		color.RGBA{0x0b, 0x60, 0x70, 0xff}, // teal
		color.RGBA{0x7a, 0x45, 0x00, 0xff}, // brown
		color.RGBA{0x26, 0x26, 0x2e, 0xff}, // near black
		color.RGBA{0xa0, 0x1f, 0x5c, 0xff}, // magenta
	}
	pales = []color.Color{
		color.RGBA{0xb4, 0xc3, 0xdc, 0xff},
		color.RGBA{0xe0, 0xb4, 0xb4, 0xff},
		color.RGBA{0xb0, 0xd8, 0xba, 0xff},
		color.RGBA{0xd2, 0xc0, 0xe4, 0xff},
		color.RGBA{0xe2, 0xce, 0xa0, 0xff},
	}
	palette = func() color.Palette {
		p := color.Palette{paper}
		p = append(p, inks...)
		return append(p, pales...)
	}()
)

// firstInk is the palette index of inks[0]; paper is index 0.
const firstInk = 1

var (
	numInks   = len(inks)
	firstPale = firstInk + len(inks)
	numPales  = len(pales)
)

// encoder favours speed: the images are tiny and made on the hot path.
var encoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &encoderPool{}}

type encoderPool struct{ p sync.Pool }

func (e *encoderPool) Get() *png.EncoderBuffer {
	b, _ := e.p.Get().(*png.EncoderBuffer)
	return b
}

func (e *encoderPool) Put(b *png.EncoderBuffer) { e.p.Put(b) }

// canvas is a paletted image with cheap, clipped pixel setters.
type canvas struct{ *image.Paletted }

func (c canvas) set(x, y int, idx uint8) {
	if x < 0 || x >= Width || y < 0 || y >= Height {
		return
	}
	c.Pix[y*c.Stride+x] = idx
}

// render draws q: pale background curves, the glyphs, then ink dots and thin
// lines over everything.
func render(rng *rand.Rand, q string) *image.Paletted {
	c := canvas{image.NewPaletted(image.Rect(0, 0, Width, Height), palette)}

	// Background texture: a few wide pale curves.
	for range 2 {
		c.curve(rng, uint8(firstPale+rng.IntN(numPales)), 3)
	}

	// Layout: glyphs advance glyphW+gap cells, spaces advance spaceW cells;
	// the scale fits the whole question into the width with a margin.
	const gap, spaceW, margin = 1.3, 1.6, 8.0
	units := 0.0
	for _, r := range q {
		if r == ' ' {
			units += spaceW
		} else {
			units += glyphW + gap
		}
	}
	units -= gap
	sx := min(3.4, (Width-2*margin)/units)
	sy := min(sx*1.45, 4.6)
	gh := glyphH * sy
	x := (Width-units*sx)/2 + (rng.Float64()-0.5)*4

	// A gentle wave bends the baseline across the whole image.
	amp := 1.5 + rng.Float64()*2
	period := 70 + rng.Float64()*60
	phase := rng.Float64() * 2 * math.Pi
	var wave [Width]float64
	for i := range wave {
		wave[i] = amp * math.Sin(2*math.Pi*float64(i)/period+phase)
	}

	prev := -1
	for _, r := range q {
		if r == ' ' {
			x += spaceW * sx
			continue
		}
		ink := rng.IntN(numInks)
		if ink == prev { // neighbours never share a colour
			ink = (ink + 1 + rng.IntN(numInks-1)) % numInks
		}
		prev = ink
		scale := 0.92 + rng.Float64()*0.16
		top := (Height-gh)/2 + (rng.Float64()-0.5)*8
		shear := (rng.Float64() - 0.5) * 0.6
		c.glyph(masks[r], x, top, sx*scale, sy*scale, shear, &wave, uint8(firstInk+ink))
		x += (glyphW + gap) * sx
	}

	// Foreground noise: specks in every colour, then thin lines across the text.
	for range 160 + rng.IntN(60) {
		px, py := rng.IntN(Width), rng.IntN(Height)
		idx := uint8(1 + rng.IntN(len(palette)-1))
		c.set(px, py, idx)
		if rng.IntN(4) == 0 {
			c.set(px+1, py, idx)
			c.set(px, py+1, idx)
			c.set(px+1, py+1, idx)
		}
	}
	for range 2 {
		c.curve(rng, uint8(firstInk+rng.IntN(numInks)), 1)
	}
	c.line(rng, uint8(firstInk+rng.IntN(numInks)))
	return c.Paletted
}

// glyph draws g with its top-left cell at (x, top), each cell sx×sy pixels,
// slanted by shear (pixels of x per pixel of y, about the glyph's middle)
// and lifted by wave per column. It maps every pixel of the glyph's box back
// into font cells, which is what makes fractional scales and shear cheap.
func (c canvas) glyph(m *mask, x, top, sx, sy, shear float64, wave *[Width]float64, idx uint8) {
	w, h := glyphW*sx, glyphH*sy
	slack := math.Abs(shear)*h/2 + 2
	x0, x1 := int(math.Floor(x-slack)), int(math.Ceil(x+w+slack))
	y0, y1 := int(math.Floor(top-6)), int(math.Ceil(top+h+6))
	x0, x1 = max(x0, 0), min(x1, Width)
	y0, y1 = max(y0, 0), min(y1, Height)
	for px := x0; px < x1; px++ {
		fx := float64(px) + 0.5
		t := top + wave[px]
		for py := y0; py < y1; py++ {
			dy := float64(py) + 0.5 - t
			if m.at((fx-x-shear*(dy-h/2))/sx, dy/sy) {
				c.Pix[py*c.Stride+px] = idx
			}
		}
	}
}

// curve draws a sine-shaped line of the given thickness across the whole
// width, filling vertical gaps so steep parts stay connected.
func (c canvas) curve(rng *rand.Rand, idx uint8, thick int) {
	y0 := 10 + rng.Float64()*(Height-20)
	amp := 4 + rng.Float64()*10
	period := 60 + rng.Float64()*120
	phase := rng.Float64() * 2 * math.Pi
	slope := (rng.Float64() - 0.5) * 0.2
	prevY := 0
	for x := range Width {
		y := int(y0 + amp*math.Sin(2*math.Pi*float64(x)/period+phase) + slope*float64(x))
		lo, hi := y, y
		if x > 0 {
			lo, hi = min(y, prevY), max(y, prevY)
		}
		for yy := lo; yy <= hi+thick-1; yy++ {
			c.set(x, yy, idx)
		}
		prevY = y
	}
}

// line draws a one-pixel straight line from the left edge to the right edge.
func (c canvas) line(rng *rand.Rand, idx uint8) {
	ya := 8 + rng.Float64()*(Height-16)
	yb := 8 + rng.Float64()*(Height-16)
	prevY := int(ya)
	for x := range Width {
		y := int(ya + (yb-ya)*float64(x)/(Width-1))
		for yy := min(y, prevY); yy <= max(y, prevY); yy++ {
			c.set(x, yy, idx)
		}
		prevY = y
	}
}
