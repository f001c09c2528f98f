package lambdaml.hive;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * HiveServer2 CUSTOM authentication against a file of salted PBKDF2 password hashes.
 *
 * <p>The Spark Thrift Server runs it with {@code hive.server2.authentication=CUSTOM} and
 * {@code hive.server2.custom.authentication.class=lambdaml.hive.PasswordFileAuthenticator}. The file is
 * named by the system property {@value #FILE_PROPERTY} (the server's {@code --hiveconf} options become
 * system properties). It holds one line per user, written by the platform (deploy/local/thrift_auth.py):
 *
 * <pre>user:pbkdf2_sha256:iterations:base64(salt):base64(hash)</pre>
 *
 * <p>The file is read at every login, so a changed password needs no restart. An unknown user costs the
 * same hash as a known one and gets the same answer, so a login attempt does not tell which users exist.
 */
public class PasswordFileAuthenticator implements PasswdAuthenticationProvider {
  public static final String FILE_PROPERTY = "lambdaml.thrift.passwords.file";
  private static final Logger LOG = LoggerFactory.getLogger(PasswordFileAuthenticator.class);
  static final String SCHEME = "pbkdf2_sha256";
  static final String REFUSED = "lambdaml: login refused: wrong user name or password";
  private static final String[] UNKNOWN_USER = {
    "", SCHEME, "200000", "bGFtYmRhbWwtdW5rbm93bg==", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
  };

  @Override
  public void Authenticate(String user, String password) throws AuthenticationException {
    String file = System.getProperty(FILE_PROPERTY, "");
    if (file.isEmpty()) {
      throw new AuthenticationException("lambdaml: login refused: no password file (" + FILE_PROPERTY + ")");
    }
    Map<String, String[]> users;
    try {
      users = read(Paths.get(file));
    } catch (IOException | RuntimeException e) {
      throw new AuthenticationException("lambdaml: login refused: the password file cannot be read", e);
    }
    String[] entry = users.get(user == null ? "" : user);
    boolean matches = matches(entry == null ? UNKNOWN_USER : entry, password == null ? "" : password);
    if (entry == null || !matches) {
      LOG.warn("lambdaml: refused a login as {}", printable(user));
      throw new AuthenticationException(REFUSED);
    }
  }

  /** The user name as sent, quoted, cut short and without control characters (it goes to the log). */
  static String printable(String user) {
    if (user == null) {
      return "(none)";
    }
    String cut = user.length() > 64 ? user.substring(0, 64) + "..." : user;
    return "'" + cut.replaceAll("\\p{Cntrl}", "?") + "'";
  }

  static Map<String, String[]> read(Path path) throws IOException {
    Map<String, String[]> users = new HashMap<>();
    List<String> lines = Files.readAllLines(path, StandardCharsets.UTF_8);
    for (String line : lines) {
      String trimmed = line.trim();
      if (trimmed.isEmpty() || trimmed.startsWith("#")) {
        continue;
      }
      String[] fields = trimmed.split(":", -1);
      if (fields.length != 5 || !SCHEME.equals(fields[1])) {
        throw new IOException("a line of the password file is not user:" + SCHEME + ":iterations:salt:hash");
      }
      users.put(fields[0], fields);
    }
    return users;
  }

  static boolean matches(String[] entry, String password) throws AuthenticationException {
    try {
      int iterations = Integer.parseInt(entry[2]);
      byte[] salt = Base64.getDecoder().decode(entry[3]);
      byte[] expected = Base64.getDecoder().decode(entry[4]);
      PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), salt, iterations, expected.length * 8);
      byte[] actual = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
      spec.clearPassword();
      return MessageDigest.isEqual(expected, actual);
    } catch (GeneralSecurityException | IllegalArgumentException e) {
      throw new AuthenticationException("lambdaml: login refused: bad password file entry", e);
    }
  }
}
