// pgwarden from Java 11+: SQL over HTTP with Basic credentials, then with a
// token from POST /_token (java.net.http), then a Postgres wire connection
// with the PostgreSQL JDBC driver (pgjdbc) over TLS with SCRAM-SHA-256: a
// prepared statement run until the driver prepares it on the server, an
// error with its SQLSTATE, and a query cancelled through pgwarden.
//
//   PGWARDEN_URL=http://127.0.0.1:8432 PGWARDEN_PGPORT=6432 PGWARDEN_CA=certs/ca.crt \
//   PGWARDEN_USER=alice PGWARDEN_PASSWORD=... \
//   java -cp /usr/share/java/postgresql.jar docs/examples/java/Example.java
//
// (Debian: apt-get install libpostgresql-jdbc-java default-jdk-headless.)
// The answers are JSON; real code would read them with a JSON library such
// as Jackson. This example prints the rows as pgwarden sent them and takes
// the token out with a pattern, to need nothing beyond the JDK and pgjdbc.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.Base64;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Example {
    static final String BASE = System.getenv("PGWARDEN_URL");
    static final String USER = System.getenv("PGWARDEN_USER");
    static final String PASSWORD = System.getenv("PGWARDEN_PASSWORD");
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(20)).build();

    static String post(String path, String auth, String json) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(BASE + path))
                .timeout(Duration.ofSeconds(20))
                .header("Authorization", auth);
        if (json != null) {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(json));
        } else {
            b.POST(HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<String> resp = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        // Every error has the same body: {"error": {"code", "message"}}.
        if (resp.statusCode() != 200) {
            throw new RuntimeException(resp.statusCode() + ": " + resp.body());
        }
        return resp.body();
    }

    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\":(\\[\\[.*?\\]\\]|\"[^\"]*\")").matcher(json);
        if (!m.find()) {
            throw new RuntimeException("no " + name + " in " + json);
        }
        return m.group(1);
    }

    public static void main(String[] args) throws Exception {
        String basic = "Basic " + Base64.getEncoder().encodeToString((USER + ":" + PASSWORD).getBytes(StandardCharsets.UTF_8));

        // 1. Basic credentials.
        String out = post("/_sql", basic, "{\"stmt\": \"SELECT current_user AS who, $1::int + 1 AS answer\", \"args\": [41]}");
        System.out.println("http basic: " + field(out, "rows"));

        // 2. A token, then Bearer.
        String token = field(post("/_token", basic, null), "token").replace("\"", "");
        out = post("/_sql", "Bearer " + token, "{\"stmt\": \"SELECT current_user AS who\"}");
        System.out.println("http bearer: " + field(out, "rows"));

        // 3. The wire, TLS verified against pgwarden's CA, SCRAM-SHA-256.
        Properties p = new Properties();
        p.setProperty("user", USER);
        p.setProperty("password", PASSWORD);
        p.setProperty("sslmode", "verify-full");
        p.setProperty("sslrootcert", System.getenv("PGWARDEN_CA"));
        p.setProperty("connectTimeout", "20");
        String url = "jdbc:postgresql://localhost:" + System.getenv("PGWARDEN_PGPORT") + "/postgres";
        try (Connection c = DriverManager.getConnection(url, p)) {
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT current_user")) {
                rs.next();
                System.out.println("wire tls scram: " + rs.getString(1));
            }
            // pgjdbc prepares a statement on the server from its fifth run
            // (prepareThreshold); the runs after that use it by name.
            long sum = 0;
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2")) {
                for (int i = 1; i <= 10; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        sum += rs.getLong(1);
                    }
                }
            }
            System.out.println("wire prepared: " + sum);
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT 1/0");
            } catch (SQLException e) {
                System.out.println("wire error: " + e.getSQLState());
            }
            // Statement.cancel sends a CancelRequest on a new connection;
            // pgwarden passes it on to the backend that runs the query.
            try (Statement st = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(500);
                        st.cancel();
                    } catch (Exception e) {
                        e.printStackTrace();
                    }
                });
                canceller.start();
                try {
                    st.execute("SELECT pg_sleep(30)");
                    System.out.println("wire cancel: not cancelled");
                } catch (SQLException e) {
                    System.out.println("wire cancel: " + e.getSQLState());
                }
                canceller.join();
            }
        }
    }
}
