package wire

// ParseVendorID returns the Vendor ID of a V payload body (RFC 7296 §3.12).
// Any length is syntax; an empty ID simply matches nothing.
func ParseVendorID(body []byte) ([]byte, error) { return body, nil }

// AddVendorID appends a Vendor ID payload.
func (w *Builder) AddVendorID(id []byte) { w.Add(PayloadVendor, id) }
