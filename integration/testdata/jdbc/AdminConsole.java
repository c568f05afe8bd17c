// AdminConsole is what a JDBC monitoring job does with pgwarden's admin
// console (TestJDBCReadsTheAdminConsole): pgjdbc sends SET extra_float_digits
// and SET application_name as it connects, checks the connection with an
// empty query (isValid), and reads SHOW commands. The console speaks the
// simple query protocol, so the URL asks for it (preferQueryMode=simple).
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;

public class AdminConsole {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/pgwarden?sslmode=disable&preferQueryMode=simple&ApplicationName=monitor";
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            System.out.println("valid: " + c.isValid(5));
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SHOW VERSION")) {
                r.next();
                System.out.println("version: " + r.getString(1));
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SHOW CLIENTS")) {
                int n = 0;
                while (r.next()) {
                    n++;
                }
                System.out.println("clients: " + n);
            }
        }
    }
}
