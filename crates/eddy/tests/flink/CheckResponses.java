// Deserializes Eddy's REST answers into Apache Flink's own response classes, with the strict
// object mapper Flink's RestClient uses (RestMapperUtils.getStrictObjectMapper()): a missing
// required field, a null primitive or a wrong type fails here as it fails in Flink's clients.
//
// Run by crates/eddy/tests/flink_clients.rs as a single-file Java program:
//   java -cp flink-dist.jar CheckResponses.java http://host:port PATH=CLASS[<CLASS>] ...
// (`@FILE=CLASS` checks a saved answer instead.)
// Prints one line per PATH: `ok PATH` or `FAIL PATH: why`; exits 1 if any failed.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import org.apache.flink.runtime.rest.util.RestMapperUtils;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JavaType;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

public class CheckResponses {
    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = RestMapperUtils.getStrictObjectMapper();
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        String base = args[0];
        boolean failed = false;
        for (int i = 1; i < args.length; i++) {
            String spec = args[i];
            int eq = spec.lastIndexOf('=');
            String path = spec.substring(0, eq);
            String type = spec.substring(eq + 1);
            try {
                if (path.startsWith("@")) {
                    // A saved answer, for working on a response by hand.
                    String body = java.nio.file.Files.readString(java.nio.file.Path.of(path.substring(1)));
                    mapper.readValue(body, javaType(mapper, type));
                    System.out.println("ok " + path);
                    continue;
                }
                HttpRequest request = HttpRequest.newBuilder(URI.create(base + path))
                        .timeout(Duration.ofSeconds(10))
                        .GET()
                        .build();
                HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
                if (response.statusCode() != 200) {
                    throw new IllegalStateException("HTTP " + response.statusCode() + ": " + response.body());
                }
                Object value = mapper.readValue(response.body(), javaType(mapper, type));
                if (value == null) {
                    throw new IllegalStateException("null");
                }
                System.out.println("ok " + path);
            } catch (Exception e) {
                failed = true;
                System.out.println("FAIL " + path + ": " + e.toString().replace('\n', ' '));
            }
        }
        System.exit(failed ? 1 : 0);
    }

    /** `Outer<Inner>` or `Class`. */
    static JavaType javaType(ObjectMapper mapper, String type) throws ClassNotFoundException {
        int lt = type.indexOf('<');
        if (lt < 0) {
            return mapper.getTypeFactory().constructType(Class.forName(type));
        }
        Class<?> outer = Class.forName(type.substring(0, lt));
        Class<?> inner = Class.forName(type.substring(lt + 1, type.length() - 1));
        return mapper.getTypeFactory().constructParametricType(outer, inner);
    }
}
