package media
import (_ "github.com/pion/rtp"; _ "github.com/pion/sdp/v3"; _ "go.uber.org/goleak")
