package hl7v2

import (
	"fmt"
	"os"
	"testing"
)

func TestDump(t *testing.T) {
	name := os.Getenv("DUMP")
	if name == "" {
		t.Skip()
	}
	_, res, err := ParseAndConvert(samples(t)[name], Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Segments {
		fmt.Printf("%-8s env=%v res=%v nc=%q\n", a.Where, a.Envelope, a.Resources, a.NotConverted)
	}
	for _, r := range res.Resources {
		fmt.Println(string(r.Raw))
	}
}
