# Copyright (c) mmstop contributors. All rights reserved.
