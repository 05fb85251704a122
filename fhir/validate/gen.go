package validate

//go:generate go run ./internal/gen -testdata ../../../shared/testdata -out model.json.gz
