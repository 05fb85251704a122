package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/config"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/server"
	"github.com/fhirgate/fhirgate/storage/sqlstore"
)

// cmdBench loads Synthea bundles repeatedly (new ids each time) until the
// store holds at least --resources resources, then measures search
// latencies in process and prints p50/p99 per query shape.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", envDefault("FHIRGATE_DB", "sqlite:./fhirgate-bench/bench.db"), "store to load and measure")
	data := fs.String("data", "../shared/testdata/synthea-r4", "folder of Synthea transaction bundles")
	target := fs.Int("resources", 200000, "load until the store holds this many resources")
	queries := fs.Int("queries", 2000, "queries per shape")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(*data, "*.json"))
	if len(files) == 0 {
		return fmt.Errorf("bench: no bundles in %s", *data)
	}
	var bundles [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		bundles = append(bundles, b)
	}
	registry, err := search.New(search.Options{Reserved: []string{"_cursor"}})
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db, sqlstore.Options{Registry: registry})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg, _ := config.Parse("", nil)
	v, err := newValidator(cfg)
	if err != nil {
		return err
	}
	srv := server.New(server.Config{Store: st, Search: registry, Validator: v, BaseURL: "http://bench"})
	do := func(method, path string, body []byte) *httptest.ResponseRecorder {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(string(body))
		}
		req := httptest.NewRequest(method, path, rd)
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=minimal")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	count := func() int {
		w := do(http.MethodGet, "/_history?_count=1", nil)
		var b struct{ Total int }
		_ = json.Unmarshal(w.Body.Bytes(), &b)
		return b.Total
	}
	have := count()
	fmt.Fprintf(stdout, "store holds %d resource versions; loading to %d\n", have, *target)
	start := time.Now()
	loaded := 0
	for have < *target {
		for _, b := range bundles {
			w := do(http.MethodPost, "/", b)
			if w.Code != http.StatusOK {
				return fmt.Errorf("bench: load answered %d: %.300s", w.Code, w.Body.String())
			}
			n := strings.Count(string(b), `"request":`)
			have += n
			loaded += n
		}
		fmt.Fprintf(stderr, "\r%d resources", have)
	}
	if loaded > 0 {
		el := time.Since(start)
		fmt.Fprintf(stdout, "\nloaded %d resources in %s: %.0f resources/s\n", loaded, el.Round(time.Millisecond), float64(loaded)/el.Seconds())
	}
	// sample patients and their most common Observation code
	w := do(http.MethodGet, "/Patient?_count=1000&_elements=id", nil)
	var pb struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &pb); err != nil || len(pb.Entry) == 0 {
		return fmt.Errorf("bench: no patients")
	}
	shapes := []struct {
		name string
		path func(pid string) string
	}{
		{"Observation?patient=&code=", func(pid string) string {
			return "/Observation?patient=" + pid + "&code=http://loinc.org|8302-2"
		}},
		{"Observation?patient=&date=ge..&date=lt..", func(pid string) string {
			return "/Observation?patient=" + pid + "&date=ge2015-01-01&date=lt2018-01-01"
		}},
		{"Observation?patient=&_count=50", func(pid string) string { return "/Observation?patient=" + pid + "&_count=50" }},
		{"Patient/:id (read)", func(pid string) string { return "/Patient/" + pid }},
		{"Patient/:id/$everything", func(pid string) string { return "/Patient/" + pid + "/$everything" }},
	}
	fmt.Fprintf(stdout, "\n%d resources, %d patients sampled; %d queries per shape, in process (no network)\n\n", have, len(pb.Entry), *queries)
	fmt.Fprintf(stdout, "| query | p50 | p99 | mean entries |\n|---|---:|---:|---:|\n")
	for _, sh := range shapes {
		lat := make([]time.Duration, 0, *queries)
		entries := 0
		for i := 0; i < *queries; i++ {
			pid := pb.Entry[rand.IntN(len(pb.Entry))].Resource.ID
			t0 := time.Now()
			w := do(http.MethodGet, sh.path(pid), nil)
			lat = append(lat, time.Since(t0))
			if w.Code != http.StatusOK {
				return fmt.Errorf("bench: %s answered %d", sh.path(pid), w.Code)
			}
			entries += strings.Count(w.Body.String(), `"fullUrl"`)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Fprintf(stdout, "| %s | %s | %s | %.1f |\n", sh.name, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), float64(entries)/float64(*queries))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
