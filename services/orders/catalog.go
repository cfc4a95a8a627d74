package orders

import "github.com/payonce/payonce/internal/errs"

// Product is something that can be ordered, with its price per currency
// in minor units.
type Product struct {
	SKU    string
	Name   string
	Prices map[string]int64
}

// Catalog answers what a product costs. The service asks it for every line,
// which is what keeps a client from choosing its own prices.
type Catalog interface {
	Product(sku string) (Product, bool)
}

// StaticCatalog is a fixed product list: enough to show the flow. A real
// system asks a catalog or pricing service here.
type StaticCatalog map[string]Product

// Product implements Catalog.
func (c StaticCatalog) Product(sku string) (Product, bool) {
	p, ok := c[sku]
	return p, ok
}

// DemoCatalog is the catalog the services ship with.
var DemoCatalog = StaticCatalog{
	"espresso":     {SKU: "espresso", Name: "Espresso beans, 1 kg", Prices: map[string]int64{"EUR": 2450, "USD": 2690, "JPY": 3900}},
	"grinder":      {SKU: "grinder", Name: "Burr grinder", Prices: map[string]int64{"EUR": 18900, "USD": 19900, "JPY": 31000}},
	"cup":          {SKU: "cup", Name: "Ceramic cup", Prices: map[string]int64{"EUR": 1200, "USD": 1300, "JPY": 1900}},
	"gift-card":    {SKU: "gift-card", Name: "Gift card", Prices: map[string]int64{"EUR": 5000, "USD": 5000}},
	"descaler":     {SKU: "descaler", Name: "Descaler", Prices: map[string]int64{"EUR": 899, "USD": 999}},
	"subscription": {SKU: "subscription", Name: "Monthly beans", Prices: map[string]int64{"EUR": 2900, "USD": 3200}},
}

func unknownSKU(i int, sku string) errs.FieldError {
	return errs.FieldError{Field: fieldOfLine(i, "sku"), Reason: "unknown product " + quote(sku)}
}
