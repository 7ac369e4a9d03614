/*
 * FailFast.main(args, Program::run): run a test program's body; on any
 * exception print it and halt with status 1.  An exception that ended main
 * would otherwise leave the RocketMQ client's non-daemon threads running,
 * and the JVM with them: a test waiting for the program would wait forever.
 */
final class FailFast {
    interface Body {
        void run(String[] args) throws Exception;
    }

    static void main(String[] args, Body body) {
        try {
            body.run(args);
        } catch (Throwable t) {
            t.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
    }

    private FailFast() {
    }
}
