import Ev
