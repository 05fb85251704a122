#!/bin/sh
# Makes a private CA and one certificate for the proxy's names, once, into
# /certs: the proxy serves them and the gateways trust the CA (their
# OpenID provider is reached through the proxy over HTTPS). Replace with
# your own certificates in production.
set -eu
cd /certs
if [ -f ca.crt ] && [ -f proxy.crt ]; then exit 0; fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
  -subj "/CN=fhirgate compose CA" -keyout ca.key -out ca.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout proxy.key -out proxy.csr
printf 'subjectAltName=DNS:localhost,DNS:keycloak.localhost\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in proxy.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -extfile ext.cnf -out proxy.crt
rm -f proxy.csr ext.cnf ca.key ca.srl
chmod 644 ca.crt proxy.crt
chmod 640 proxy.key
chown 0:0 proxy.key
