// Independent signer in Java, the way Tencent's Java sample builds `original`
// (java.net.URLEncoder, space as '+') and signs it (javax.crypto HmacSHA1, java.util.Base64).
// One JSON object per line: producer, secretKey, args, signature.
// Usage: java Sign.java SEED COUNT NOW
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class Sign {
    static final int[] ALPHABET = ("abcXYZ019 -_.~!*'()&=+%#?/:;,\"{}[]<>|^`@$"
            + "名字视频上传テスト한국어éü€\uD83D\uDE00\uD83C\uDFAC").codePoints().toArray();

    static String text(Random rng, int max) {
        StringBuilder sb = new StringBuilder();
        int n = rng.nextInt(max + 1);
        for (int i = 0; i < n; i++) sb.appendCodePoint(ALPHABET[rng.nextInt(ALPHABET.length)]);
        return sb.toString();
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    public static void main(String[] argv) throws Exception {
        long seed = Long.parseLong(argv[0]);
        int count = Integer.parseInt(argv[1]);
        long now = Long.parseLong(argv[2]);
        Random rng = new Random(seed);
        long[] validities = {1, 60, 600, 86400, 7776000};
        String[] modes = {"Finish", "Change", "None"};
        for (int i = 0; i < count; i++) {
            Map<String, Object> args = new LinkedHashMap<>();
            args.put("secretId", "AKID" + Math.abs(rng.nextLong()));
            args.put("currentTimeStamp", now);
            args.put("expireTime", now + validities[rng.nextInt(validities.length)]);
            args.put("random", Integer.toUnsignedLong(rng.nextInt()));
            if (rng.nextBoolean()) {
                args.put("procedure", "QCVB_SimpleProcessFile({1,1,1,1})");
                if (rng.nextBoolean()) args.put("taskPriority", rng.nextInt(21) - 10);
                if (rng.nextBoolean()) args.put("taskNotifyMode", modes[rng.nextInt(3)]);
            }
            if (rng.nextBoolean()) args.put("classId", (long) rng.nextInt(1_000_000));
            if (rng.nextBoolean()) args.put("sourceContext", text(rng, 80));
            if (rng.nextBoolean()) args.put("oneTimeValid", rng.nextInt(2));
            if (rng.nextBoolean()) args.put("sessionContext", text(rng, 300));
            if (rng.nextBoolean()) args.put("vodSubAppId", 1_500_000_000L + rng.nextInt(1000));

            StringBuilder original = new StringBuilder();
            StringBuilder argsJson = new StringBuilder("{");
            for (Map.Entry<String, Object> e : args.entrySet()) {
                if (original.length() > 0) { original.append('&'); argsJson.append(','); }
                String value = String.valueOf(e.getValue());
                original.append(e.getKey()).append('=').append(URLEncoder.encode(value, "utf8"));
                argsJson.append(json(e.getKey())).append(':');
                argsJson.append(e.getValue() instanceof String ? json(value) : value);
            }
            argsJson.append('}');
            String key = text(rng, 40);
            if (key.isEmpty()) key = "k";
            Mac mac = Mac.getInstance("HmacSHA1");
            mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), mac.getAlgorithm()));
            byte[] plain = original.toString().getBytes(StandardCharsets.UTF_8);
            byte[] tag = mac.doFinal(plain);
            byte[] all = new byte[tag.length + plain.length];
            System.arraycopy(tag, 0, all, 0, tag.length);
            System.arraycopy(plain, 0, all, tag.length, plain.length);
            System.out.println("{\"producer\":\"java-urlencoder\",\"secretKey\":" + json(key)
                    + ",\"args\":" + argsJson + ",\"signature\":\""
                    + Base64.getEncoder().encodeToString(all) + "\"}");
        }
    }
}
