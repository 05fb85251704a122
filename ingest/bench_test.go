package ingest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/fhirgate/fhirgate/ingest"
	"github.com/fhirgate/fhirgate/mllp"
)

// BenchmarkMLLPStored sends HL7 v2 ORU messages over one MLLP connection
// and counts only messages that were converted, durably stored in the
// patient's record and acknowledged with AA.
func BenchmarkMLLPStored(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			if kind == "postgres" && os.Getenv("FHIRGATE_TEST_POSTGRES") == "" {
				b.Skip("set FHIRGATE_TEST_POSTGRES")
			}
			base := samples(b, "hl7v2", ".hl7")
			msg := base["ORU-R01-01.hl7"]
			if msg == nil {
				b.Skip("ORU-R01-01.hl7 not found")
			}
			st := reopenable(b, kind)()
			defer st.Close()
			srv := &mllp.Server{Handler: &ingest.HL7Handler{Store: st, Search: registry, Now: fixedNow}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()
			cl, err := mllp.Dial(context.Background(), ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// a new control id and a new result value each time, so every
				// message is new content to store
				m := withControlID(msg, fmt.Sprintf("BENCH%09d", i))
				ack, err := cl.Send(context.Background(), m)
				if err != nil {
					b.Fatal(err)
				}
				if code := ackCode(ack); code != "AA" {
					b.Fatalf("ACK %s", code)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
