package compress_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Product is a realistic cached value: a catalog entry with free text,
// prices, tags and attributes, as a JSON API would return it.
type Product struct {
	ID          int               `json:"id"`
	SKU         string            `json:"sku"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	PriceCents  int               `json:"price_cents"`
	Currency    string            `json:"currency"`
	Stock       int               `json:"stock"`
	Tags        []string          `json:"tags"`
	Attributes  map[string]string `json:"attributes"`
	UpdatedAt   string            `json:"updated_at"`
}

// Page is a value holding several products (a category page, a search
// result): the shape of the larger values a cache holds.
type Page struct {
	Category string    `json:"category"`
	Products []Product `json:"products"`
}

var words = strings.Fields(`lightweight durable waterproof stainless steel cotton organic premium classic
	compact portable wireless rechargeable ergonomic adjustable vintage modern handmade recycled bamboo leather
	ceramic glass aluminium titanium carbon fibre wool linen silk denim canvas rubber silicone walnut oak maple
	kitchen garden outdoor travel office home kids sport winter summer everyday professional essential
	set pack bundle edition series collection model version size colour finish pattern design style fit
	with for and the a of in on to by from includes features perfect ideal great gift easy clean`)

var colours = []string{"black", "white", "navy", "olive", "sand", "charcoal", "red", "teal"}

// realisticJSON returns a Page whose JSON encoding is about size bytes,
// deterministic for a seed.
func realisticJSON(size int, seed uint64) Page {
	r := rand.New(rand.NewPCG(seed, 42))
	text := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[r.IntN(len(words))])
		}
		return b.String()
	}
	p := Page{Category: text(2)}
	for id := 1; ; id++ {
		prod := Product{
			ID: 100000 + r.IntN(900000), SKU: fmt.Sprintf("SKU-%06d", r.IntN(1000000)),
			Name: text(3 + r.IntN(3)), Description: text(15 + r.IntN(25)),
			PriceCents: 99 + r.IntN(50000), Currency: "EUR", Stock: r.IntN(500),
			Tags:       []string{words[r.IntN(len(words))], words[r.IntN(len(words))]},
			Attributes: map[string]string{"colour": colours[r.IntN(len(colours))], "size": []string{"S", "M", "L", "XL"}[r.IntN(4)], "material": words[r.IntN(len(words))]},
			UpdatedAt:  fmt.Sprintf("2025-%02d-%02dT%02d:%02d:%02dZ", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60)),
		}
		p.Products = append(p.Products, prod)
		b, _ := json.Marshal(p)
		if len(b) >= size {
			if len(p.Products) > 1 {
				p.Products = p.Products[:len(p.Products)-1]
				b, _ = json.Marshal(p)
			}
			// Pad the category to land near size.
			if pad := size - len(b); pad > 0 {
				p.Category += " " + strings.Repeat("x", pad-1)
			}
			return p
		}
	}
}
