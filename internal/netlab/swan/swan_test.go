package swan

import "testing"

func TestParseRaw(t *testing.T) {
	const out = `{peerlab {uniqueid=3 state=ESTABLISHED initiator-spi=f3d9544ca9d06981 responder-spi=af2b5a7d443a3959 child-sas {net-2 {name=net state=INSTALLED spi-in=ab8cb6d8 spi-out=d05a3c5d bytes-in=0 local-ts=[10.98.0.2/32] remote-ts=[10.97.0.0/16 10.96.0.0/16]}}}}`
	n, err := parseRaw(out)
	if err != nil {
		t.Fatal(err)
	}
	sa := n.sections["peerlab"]
	if sa == nil || sa.values["state"] != "ESTABLISHED" || sa.values["initiator-spi"] != "f3d9544ca9d06981" {
		t.Fatalf("IKE SA: %+v", sa)
	}
	c := sa.sections["child-sas"].sections["net-2"]
	if c.values["spi-out"] != "d05a3c5d" || len(c.lists["remote-ts"]) != 2 || c.lists["local-ts"][0] != "10.98.0.2/32" {
		t.Fatalf("child: %+v", c)
	}
	for _, bad := range []string{"", "{", "{a {b=c}", "}"} {
		if _, err := parseRaw(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
