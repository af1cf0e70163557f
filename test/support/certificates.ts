import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export type Certificates = { dir: string; ca: Buffer; serverCert: Buffer; serverKey: Buffer; clientCert: Buffer; clientKey: Buffer };

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl. */
export function makeCertificates(): Certificates {
  const dir = mkdtempSync(path.join(tmpdir(), "referral-tls-"));
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=referral-test-ca", "-keyout", file("ca.key"), "-out", file("ca.crt"));
  const issue = (name: string, subject: string, extensions: string) => {
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
      "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`));
    writeFileSync(file(`${name}.ext`), extensions);
    openssl("x509", "-req", "-in", file(`${name}.csr`), "-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-CAcreateserial",
      "-days", "1", "-extfile", file(`${name}.ext`), "-out", file(`${name}.crt`));
  };
  issue("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  issue("client", "/CN=checkout-service", "extendedKeyUsage=clientAuth\n");
  return {
    dir,
    ca: readFileSync(file("ca.crt")),
    serverCert: readFileSync(file("server.crt")),
    serverKey: readFileSync(file("server.key")),
    clientCert: readFileSync(file("client.crt")),
    clientKey: readFileSync(file("client.key")),
  };
}
